"""Draw the template browser's card for each example workflow: `python tests/example_cards.py`.

ComfyUI shows `<workflow>.jpg` beside each example as a square card about 250 px wide. A
screenshot of the graph is unreadable at that size, and no real run made a picture we could show
as the model's output, so each card says what the workflow does instead: its input images, the
node that runs, the kind of result, and the prompt, in type large enough to read on the card.
The prompt and the pictures are read from the workflow itself, so a card follows its example.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from workflow_format import (COST_ESTIMATE, EDIT_IMAGE, LOCAL_COMFYUI, LOCAL_DIFFUSERS, MULTI_REFERENCE, TEXT_TO_IMAGE,
                             WORKFLOWS)

SIZE = 512
MAX_PROMPT_LINES = 4
BACKGROUND, PANEL, CHIP, TEXT, MUTED, ACCENT = "#1b1b1d", "#262729", "#3c3d42", "#ffffff", "#a0a0a0", "#f5b642"
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")  # Debian's fonts-dejavu; Pillow's own font otherwise
FONT_FOLDER = Path("/usr/share/fonts/truetype/dejavu")
CHIP_NAMES = {  # the pack's nodes as the node menu names them
    "FluxFlexGenerate": "Generate (text to image)", "FluxFlexEdit": "Edit image",
    "FluxFlexCostEstimate": "Cost Estimate",
    "FluxFlexLocalModel": "Local Model (diffusers)",
    "FluxFlexNativeModel": "Local Model (ComfyUI)",
}
MAIN_NODES = ("FluxFlexGenerate", "FluxFlexEdit", "FluxFlexCostEstimate")
LOCAL_MODEL_NODES = ("FluxFlexLocalModel", "FluxFlexNativeModel")
# What each card says beyond the workflow itself: its title, how it runs, and the kind of result.
CARDS = {
    TEXT_TO_IMAGE: ("Text to image", "FLUX.2 [flex] · your provider key", "new image"),
    EDIT_IMAGE: ("Edit an image", "FLUX.2 [flex] · your provider key", "edited image"),
    MULTI_REFERENCE: ("Edit with references", "FLUX.2 [flex] · up to 8 images", "edited image"),
    COST_ESTIMATE: ("Cost estimate", "FLUX.2 [flex] · no key, nothing sent", "price"),
    LOCAL_DIFFUSERS: ("Local run, diffusers", "FLUX.2 [klein] 4B · your GPU, free", "new image"),
    LOCAL_COMFYUI: ("Local edit, ComfyUI", "FLUX.2 [klein] 4B · your GPU, free", "edited image"),
}


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = FONT_FOLDER / FONT_FILES[bold]
    return ImageFont.truetype(str(path), size) if path.is_file() else ImageFont.load_default(size)


def draw_card(path: Path) -> Image.Image:
    title, subtitle, result = CARDS[path]
    workflow = json.loads(path.read_text(encoding="utf-8"))
    nodes = workflow["nodes"]
    pictures = [node["widgets_values"][0] for node in nodes if node["type"] == "LoadImage"]
    helpers = [CHIP_NAMES[node["type"]] for node in nodes if node["type"] in LOCAL_MODEL_NODES]
    main = next(node for node in nodes if node["type"] in MAIN_NODES)
    prompt = max((value for value in main["widgets_values"] if isinstance(value, str)), key=len)

    card = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    draw = ImageDraw.Draw(card)
    # The top left stays clear: the template browser lays its "Node graph" badge over it.
    draw.text((28, 62), title, font=font(38, bold=True), fill=TEXT)
    draw.text((28, 110), subtitle, font=font(21), fill=MUTED)

    # The flow: inputs -> the node that runs -> the kind of result.
    top, height = 154, 140
    inputs = [*pictures[:3], *helpers[:1]] or ["Prompt"]  # text to image: the prompt is its input
    for item, box in zip(inputs, input_boxes(len(inputs), 28, top, 150, height)):
        if item in pictures:
            with Image.open(WORKFLOWS / "input_images" / item) as picture:
                card.paste(ImageOps.fit(picture.convert("RGB"), (box[2] - box[0], box[3] - box[1])), box[:2])
        else:
            chip(draw, box, item, size=20 if item == "Prompt" else 17)
    arrow(draw, 178, top + height // 2)
    x = 216
    node_box = (x, top + 15, x + 128, top + height - 15)
    chip(draw, node_box, CHIP_NAMES[main["type"]], accent=True, size=20)
    arrow(draw, node_box[2] + 4, top + height // 2)
    outcome(draw, (node_box[2] + 42, top, SIZE - 28, top + height), result)

    # The prompt, as typed in the workflow.
    panel = (28, 312, SIZE - 28, SIZE - 20)
    draw.rounded_rectangle(panel, radius=14, fill=PANEL)
    draw.text((panel[0] + 18, panel[1] + 14), "Prompt", font=font(19, bold=True), fill=MUTED)
    lines = textwrap.wrap(f"“{prompt}”", width=33, break_on_hyphens=False)
    shown = lines[:MAX_PROMPT_LINES]
    if len(lines) > MAX_PROMPT_LINES:
        shown[-1] = shown[-1].rstrip(" ,.") + " …”"
    draw.multiline_text((panel[0] + 18, panel[1] + 44), "\n".join(shown), font=font(22), fill=TEXT, spacing=7)
    return card


def input_boxes(count: int, left: int, top: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Room for one to four inputs in a column: one fills it, two stack, more put the first on top
    and the rest side by side below it."""
    gap = 8
    if count <= 2:
        step = (height - gap * (count - 1)) // count
        return [(left, top + i * (step + gap), left + width, top + i * (step + gap) + step) for i in range(count)]
    first = (left, top, left + width, top + height * 3 // 5)
    below, step = first[3] + gap, (width - gap * (count - 2)) // (count - 1)
    return [first, *((left + i * (step + gap), below, left + i * (step + gap) + step, top + height)
                     for i in range(count - 1))]


def chip(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], label: str, accent: bool = False,
         size: int = 21) -> None:
    draw.rounded_rectangle(box, radius=12, fill=CHIP, outline=ACCENT if accent else None, width=3)
    wrapped = "\n".join(textwrap.wrap(label, width=max(4, (box[2] - box[0]) * 10 // (size * 7))))
    draw.multiline_text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), wrapped, font=font(size, bold=True),
                        fill=TEXT, anchor="mm", align="center", spacing=4)


def arrow(draw: ImageDraw.ImageDraw, x: int, y: int) -> None:
    draw.line((x + 4, y, x + 26, y), fill=MUTED, width=4)
    draw.polygon(((x + 30, y), (x + 20, y - 8), (x + 20, y + 8)), fill=MUTED)


def outcome(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], label: str) -> None:
    """An empty frame with what comes out: no picture, since no real run made one."""
    left, top, right, bottom = box
    for start in range(left, right, 14):  # a dashed frame
        draw.line((start, top, min(start + 7, right), top), fill=MUTED, width=3)
        draw.line((start, bottom, min(start + 7, right), bottom), fill=MUTED, width=3)
    for start in range(top, bottom, 14):
        draw.line((left, start, left, min(start + 7, bottom)), fill=MUTED, width=3)
        draw.line((right, start, right, min(start + 7, bottom)), fill=MUTED, width=3)
    middle = (left + right) // 2
    if label == "price":
        draw.text((middle, top + 58), "$", font=font(52, bold=True), fill=ACCENT, anchor="mm")
    else:  # a picture glyph: a sun over two hills
        draw.ellipse((middle + 8, top + 30, middle + 28, top + 50), fill=ACCENT)
        draw.polygon(((middle - 34, top + 88), (middle - 8, top + 52), (middle + 14, top + 88)), fill=MUTED)
        draw.polygon(((middle - 4, top + 88), (middle + 16, top + 64), (middle + 36, top + 88)), fill=MUTED)
    draw.multiline_text((middle, bottom - 26), label.replace(" ", "\n", 1),
                        font=font(18, bold=True), fill=TEXT, anchor="mm", align="center")


def main() -> None:
    for path in CARDS:
        draw_card(path).save(path.with_suffix(".jpg"), quality=90, optimize=True)
        print(path.with_suffix(".jpg").name)


if __name__ == "__main__":
    main()
