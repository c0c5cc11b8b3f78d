"""The price a node shows before it runs, from its widgets and what the browser knows of its images.

The web extension cannot see pixels, only which sockets are wired and, where an image comes from
a LoadImage node, which file it is (the server reads that file's size). So a preview is exact
when every image's size is known and a range otherwise: an unknown image counts as at least
1 MP and at most the provider's cap. The figures come from the engine's pricing table and the
same size rules as a run (Edit's size from its input, reference downscaling), so a known-size
preview equals the price the run then reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Mapping

from ..engine.errors import FluxFlexError
from ..engine.pricing import CostEstimate, PerMegapixelPrice, UnknownPrice, estimate_from_sizes, price_for
from ..engine.providers import make_provider
from ..engine.request import MEGAPIXEL, downscaled_size
from .native_flux2 import edit_output_note, template_edit_size
from .node_runs import COST_ESTIMATE_NODE, EDIT_NODE, NATIVE_MODEL_NODE, NodeSettings, edit_output_size
from .references import REFERENCE_LIMITS

SMALLEST_BILLED = (1024, 1024)  # any image up to 1 MP is billed as 1 MP
LARGEST_INPUT = (2048, 2048)  # inputs are downscaled to at most 4 MP before sending


@dataclass(frozen=True)
class SocketImages:
    """What is known before a run about the images on one input socket.

    `sizes` are frames whose size is known (files picked in LoadImage nodes); `unknown` counts
    sources whose frames are only known when the graph runs (each gives at least one frame).
    """

    sizes: tuple[tuple[int, int], ...] = ()
    unknown: int = 0


# The price line's parts, joined by " · ", in English; the web extension shows each in the user's
# language under the same key (locales/<lang>/main.json, flux2Flex.price.<key>). Figures, sizes,
# provider names and error messages go in as values and stay as they are.
PRICE_WORDS: dict[str, str] = {
    "amount": "{amount}",
    "size": "{size}",
    "inputSize": "the input's size",
    "free": "free (local run)",
    "unknown": "price unknown: see {see}",
    "problem": "check settings ({error})",
    "needsPrompt": "needs a prompt",
    "needsImage": "needs an image",
    "noKey": "no {provider} key: Settings > FLUX.2 Flex",
    "note": "{note}",
}
PLACEHOLDER_PROMPT = "(prompt)"
Part = tuple[str, dict[str, str]]


@dataclass(frozen=True)
class PricePreview:
    """The node's price line (`$0.050 · 832x1248`, `~$0.100-$0.450 · ...`, `price unknown: see ...`)
    and its explanation (the tooltip)."""

    text: str
    detail: str
    usd_low: float | None = None
    usd_high: float | None = None
    problem: bool = False  # the run would be refused (a setting, a missing key or image): `text` says why
    parts: tuple[Part, ...] = ()  # `text` as PRICE_WORDS keys and their values, for other languages

    @classmethod
    def of(cls, parts: list[Part], detail: str, *args: object, **kwargs: object) -> "PricePreview":
        """A preview whose text is its parts in English."""
        text = " · ".join(PRICE_WORDS[key].format(**values) for key, values in parts)
        return cls(text, detail, *args, parts=tuple(parts), **kwargs)


def preview_price(
    settings: NodeSettings,
    *,
    edit_image: SocketImages | None = None,
    references: SocketImages | None = None,
    match_input_size: bool = True,
    local: bool = False,
    native: bool = False,
    has_key: bool = True,
) -> PricePreview:
    """The price of what the node would send with these settings, exact where sizes are known,
    with the output size it prices; `has_key` is whether the provider's key is there to pay with.
    `native`: the local model is a Local Model (ComfyUI), whose Edit follows ComfyUI's templates."""
    size = _output_size_text(settings, edit_image, match_input_size)
    needs_prompt = not settings.prompt.strip()
    if needs_prompt:  # said after the price, rather than as a refusal in place of it
        settings = replace(settings, prompt=PLACEHOLDER_PROMPT)
    if local:
        detail = "a local model is wired in: the run uses your own hardware"
        if native and match_input_size and edit_image is not None and edit_image.sizes:
            width, height = template_edit_size(*edit_image.sizes[0])
            return PricePreview.of([("free", {}), ("size", {"size": f"{width}x{height}"})],
                                   f"{detail}; {edit_output_note(*edit_image.sizes[0])}", 0.0, 0.0)
        return PricePreview.of([("free", {}), size], detail, 0.0, 0.0)
    try:
        provider = make_provider(settings.provider)
        provider.validate(settings.base_request())
        if edit_image is not None or references is not None:  # images will be uploaded in this format
            provider.check_upload_format(settings.upload_format)
    except FluxFlexError as error:
        return PricePreview.of([("problem", {"error": str(error)})], str(error), problem=True)
    price = price_for(provider.name)
    if isinstance(price, UnknownPrice):
        preview = PricePreview.of([("unknown", {"see": price.see}), size], price.reason)
    else:
        preview = _known_price(settings, price, edit_image, references, match_input_size, provider.limits.max_input_pixels,
                               size)
    request = settings.base_request()
    note = provider.price_line_note(request)  # the provider will not make exactly what was asked
    if note:
        preview = PricePreview.of([*preview.parts, ("note", {"note": note})],
                                  "\n".join([preview.detail, *provider.notes_for(request)]), preview.usd_low,
                                  preview.usd_high)
    missing: list[Part] = [("needsPrompt", {})] if needs_prompt else []
    if not has_key:
        missing.append(("noKey", {"provider": provider.key_name or provider.name}))
    return PricePreview.of([*preview.parts, *missing], preview.detail, preview.usd_low, preview.usd_high,
                           problem=True) if missing else preview


def _output_size_text(settings: NodeSettings, edit_image: SocketImages | None, match_input_size: bool) -> Part:
    """The size the run will make: from the widgets, or from the image to edit when it sets it."""
    if edit_image is None or not match_input_size:
        width, height = settings.output_size()
    elif edit_image.sizes:
        width, height = edit_output_size(settings, *edit_image.sizes[0], match_input_size).size
    else:
        return ("inputSize", {})
    return ("size", {"size": f"{width}x{height}"})


def _known_price(settings: NodeSettings, price: PerMegapixelPrice, edit_image: SocketImages | None,
                 references: SocketImages | None, match_input_size: bool, limit: int, size: Part) -> PricePreview:
    low = _extreme(settings, price, edit_image, references, match_input_size, limit, largest=False)
    high = _extreme(settings, price, edit_image, references, match_input_size, limit, largest=True)
    if low.usd == high.usd:
        return PricePreview.of([("amount", {"amount": f"${low.usd:.3f}"}), size], low.as_text(), low.usd, high.usd)
    detail = (f"between ${low.usd:.3f} and ${high.usd:.3f}: some input images are only known when the graph runs "
              f"(each counts from 1 to {limit // MEGAPIXEL} MP); Cost Estimate and the run's report give the exact "
              "figure")
    return PricePreview.of([("amount", {"amount": f"~${low.usd:.3f}-${high.usd:.3f}"}), size], detail, low.usd,
                           high.usd)


def _extreme(settings: NodeSettings, price: PerMegapixelPrice, edit_image: SocketImages | None,
             references: SocketImages | None, match_input_size: bool, limit: int, *, largest: bool) -> CostEstimate:
    """The estimate with every unknown image at its cheapest (1 MP) or dearest (the cap) size."""
    unknown_size = LARGEST_INPUT if largest else SMALLEST_BILLED
    inputs: list[tuple[int, int]] = []
    output = settings.output_size()
    if edit_image is not None:
        frame = edit_image.sizes[0] if edit_image.sizes else unknown_size
        output = edit_output_size(settings, *frame, match_input_size).size
        inputs.append(downscaled_size(*frame, limit))
    if references is not None:
        inputs.extend(downscaled_size(*downscaled_size(w, h, REFERENCE_LIMITS.max_input_pixels), limit)
                      for w, h in references.sizes)
        if references.unknown:
            room = REFERENCE_LIMITS.max_images - len(references.sizes)
            count = room if largest else min(room, references.unknown)
            inputs.extend([unknown_size] * max(0, count))
    return estimate_from_sizes(price, output, inputs, count=settings.batch_size)


ImageSizeLookup = Callable[[str], "tuple[int, int] | None"]
KeyCheck = Callable[[str, str], bool]  # (provider, key name) -> whether a key is there to pay with


def preview_for_browser(body: Mapping[str, Any], image_size: ImageSizeLookup, has_key: KeyCheck) -> dict[str, Any]:
    """Answer the web extension's question about one node: its widget values and wired images in,
    the preview as JSON out. `image_size` gives the size of an image file a LoadImage node picked
    (None when it cannot be read: that image then counts as unknown); `has_key` says whether a key
    exists (never which). Edit without an image says so instead of a price; Cost Estimate sends
    nothing, so it needs no key."""
    widgets = body.get("widgets")
    if not isinstance(widgets, Mapping):
        raise ValueError("widgets must be an object")
    settings = NodeSettings.from_widgets(widgets)
    edit_image = _socket_images(body.get("image"), image_size)
    local = bool(body.get("local", False))
    if body.get("node") == EDIT_NODE and edit_image is None:
        missing_image = PricePreview.of([("needsImage", {})], "wire the image to edit into the image input", problem=True)
        return asdict(missing_image)
    pays = body.get("node") != COST_ESTIMATE_NODE and not local
    preview = preview_price(
        settings,
        edit_image=edit_image,
        references=_socket_images(body.get("references"), image_size),
        match_input_size=bool(widgets.get("match_input_size", True)),
        local=local,
        native=body.get("local_node") == NATIVE_MODEL_NODE,
        has_key=not pays or has_key(settings.provider, settings.key_name),
    )
    return asdict(preview)


def _socket_images(socket: object, image_size: ImageSizeLookup) -> SocketImages | None:
    """{"files": [names], "unknown": n} from the browser; None when the socket is not wired."""
    if not isinstance(socket, Mapping):
        return None
    sizes = [image_size(str(name)) for name in socket.get("files", [])]
    known = tuple(size for size in sizes if size is not None)
    return SocketImages(known, int(socket.get("unknown", 0)) + len(sizes) - len(known))
