"""Generate and Edit on ComfyUI's own FLUX.2 files and nodes, inside a real ComfyUI.

Against a ComfyUI with native FLUX.2 (0.33.0): the subgraph Generate and Edit expand into is checked
against the node definitions ComfyUI publishes (/object_info), and the bundled example runs end to
end on the CPU through ComfyUI's UNETLoader, CLIPLoader and VAELoader on a tiny random-weight klein
(tiny_comfy_flux2.py says what ComfyUI accepts). Against one without (0.3.64): the node says so in
the node list and a prompt using it is refused with that message, while the diffusers node stays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_flux2_flex.nodes.logic.native_flux2 import (
    DEV, KLEIN_BASE, KLEIN_DISTILLED, KLEIN_KV, REFERENCE_LATENTS_NODE, NativeModel, NativeSources, expand_native,
)
from comfyui_flux2_flex.nodes.logic.node_runs import NATIVE_MODEL_NODE, REFERENCE_BATCH_NODE, NodeSettings
from comfyui_flux2_flex.nodes.logic.references import collect_references
from comfyui_runner import NATIVE_RUN_SECONDS, ComfyUI, needs_comfyui
from native_graph import RecordingBuilder, graph_problems
from workflow_format import LOCAL_COMFYUI, load, to_api_prompt

pytestmark = needs_comfyui
EXAMPLE = LOCAL_COMFYUI
SOURCES = NativeSources(model=["unet", 0], clip=["clip", 0], vae=["vae", 0], image=["load", 0], references=["refs", 0])
OUTSIDE = {"unet": "MODEL", "clip": "CLIP", "vae": "VAE", "load": "IMAGE", "refs": "FLUX2_FLEX_REFERENCES"}


def needs_native_flux2(object_info: dict[str, Any]) -> None:
    if "EmptyFlux2LatentImage" not in object_info:
        pytest.skip("this ComfyUI has no native FLUX.2")


@pytest.mark.parametrize("kind", [DEV, KLEIN_DISTILLED, KLEIN_BASE, KLEIN_KV])
@pytest.mark.parametrize("edit", [False, True], ids=["generate", "edit"])
def test_the_expansion_uses_comfyuis_flux2_nodes_as_they_are_defined(kind: str, edit: bool, object_info) -> None:
    needs_native_flux2(object_info)
    references = collect_references([("image_1", torch.rand(1, 1100, 1000, 3)), ("image_2", torch.rand(1, 64, 80, 3))])
    builder = RecordingBuilder()
    settings = NodeSettings(provider="bfl", prompt="a red kite", aspect_ratio="3:2", megapixels=1.0, steps=28,
                            guidance=4.5, seed=2**64 - 10, batch_size=3)
    expand_native(builder, settings, NativeModel("9", kind, "test"), SOURCES, references=references,
                  edit_image=torch.rand(2, 1200, 1400, 3) if edit else None)
    assert graph_problems(builder.nodes, object_info, OUTSIDE) == []
    used = {node["class_type"] for node in builder.nodes.values()}
    assert {"Flux2Scheduler", "EmptyFlux2LatentImage", "SamplerCustomAdvanced", REFERENCE_LATENTS_NODE} <= used


def test_the_comfyui_model_node_takes_comfyuis_loaders_outputs(object_info) -> None:
    needs_native_flux2(object_info)
    node = object_info[NATIVE_MODEL_NODE]
    required = node["input"]["required"]
    assert [required[name][0] for name in ("model", "clip", "vae")] == ["MODEL", "CLIP", "VAE"]
    assert node["output"] == ["FLUX2_FLEX_LOCAL_MODEL"] and "needs" not in node["display_name"]
    assert object_info[REFERENCE_LATENTS_NODE]["output"] == ["CONDITIONING"]
    assert "flux2" in object_info["CLIPLoader"]["input"]["required"]["type"][0]


def test_the_example_edits_on_comfyuis_own_loaders_and_sampler(comfy: ComfyUI, object_info) -> None:
    needs_native_flux2(object_info)
    workflow = load(EXAMPLE)
    prompt = to_api_prompt(workflow, object_info)
    entry = comfy.run(prompt, workflow, NATIVE_RUN_SECONDS)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (saved,) = [image for output in entry["outputs"].values() for image in output.get("images", [])]
    with Image.open(comfy.root / "output" / saved["subfolder"] / saved["filename"]) as picture:
        assert picture.size == (1248, 832), "the 768x512 street photo scaled to about 1 MP, as ComfyUI's template"
        low, high = picture.convert("L").getextrema()
        assert low < high, "random weights give a varied picture, not one flat colour"
    report = entry["outputs"]["6"]["flux2_flex"][0]["report"]
    assert "Ran on ComfyUI's own FLUX.2 nodes: klein distilled, from the file name flux-2-klein-4b.safetensors" in report
    assert "guidance 5 ignored" in report and "edit image -> VAEEncode + ReferenceLatent" in report
    assert "template defaults of ComfyUI's image_flux2_klein_image_edit_4b_distilled template: steps 4" in report
    assert "output 1248x832: the image to edit scaled to about 1 MP" in report
    log = comfy.log_path.read_text()
    assert "clip missing" in log, "ComfyUI's CLIPLoader loaded the text encoder file"
    assert "Flux2" in log, "ComfyUI's own loader detected and loaded the FLUX.2 diffusion model"
    assert "invalid value encountered" not in log, "no NaN reached SaveImage"

    again = comfy.run(prompt, workflow, NATIVE_RUN_SECONDS)
    cached = [m[1]["nodes"] for m in again["status"]["messages"] if m[0] == "execution_cached"]
    assert cached and "6" in cached[0], "ComfyUI's own cache answers the same settings"


def template_edit(prompt: dict[str, Any], *, image: list, reference: list, text: str, seed: int) -> dict[str, Any]:
    """The graph of ComfyUI's own template image_flux2_klein_image_edit_4b_distilled.json (its subgraph
    with an image to edit and one reference, node ids kept), in API form, on the prompt's loaders."""
    loaders = {"model": ["1", 0], "clip": ["2", 0], "vae": ["3", 0]}
    scale = {"upscale_method": "nearest-exact", "megapixels": 1.0, "resolution_steps": 1}
    size = {"width": ["114", 0], "height": ["114", 1]}
    nodes = {
        "111": ("ImageScaleToTotalPixels", {"image": image, **scale}),
        "85": ("ImageScaleToTotalPixels", {"image": reference, **scale}),
        "114": ("GetImageSize", {"image": ["111", 0]}),
        "109": ("CLIPTextEncode", {"clip": loaders["clip"], "text": text}),
        "86": ("ConditioningZeroOut", {"conditioning": ["109", 0]}),
        "127": ("VAEEncode", {"pixels": ["111", 0], "vae": loaders["vae"]}),
        "130": ("VAEEncode", {"pixels": ["85", 0], "vae": loaders["vae"]}),
        "128": ("ReferenceLatent", {"conditioning": ["109", 0], "latent": ["127", 0]}),
        "131": ("ReferenceLatent", {"conditioning": ["128", 0], "latent": ["130", 0]}),
        "126": ("ReferenceLatent", {"conditioning": ["86", 0], "latent": ["127", 0]}),
        "129": ("ReferenceLatent", {"conditioning": ["126", 0], "latent": ["130", 0]}),
        "103": ("CFGGuider", {"model": loaders["model"], "positive": ["131", 0], "negative": ["129", 0], "cfg": 1.0}),
        "102": ("Flux2Scheduler", {"steps": 4, **size}),
        "113": ("EmptyFlux2LatentImage", {**size, "batch_size": 1}),
        "106": ("RandomNoise", {"noise_seed": seed}),
        "101": ("KSamplerSelect", {"sampler_name": "euler"}),
        "104": ("SamplerCustomAdvanced", {"noise": ["106", 0], "guider": ["103", 0], "sampler": ["101", 0],
                                          "sigmas": ["102", 0], "latent_image": ["113", 0]}),
        "105": ("VAEDecode", {"samples": ["104", 0], "vae": loaders["vae"]}),
        "122": ("SaveImage", {"images": ["105", 0], "filename_prefix": "template/klein_edit"}),
    }
    return {**prompt, **{key: {"class_type": kind, "inputs": inputs} for key, (kind, inputs) in nodes.items()}}


def saved_pixels(comfy: ComfyUI, entry: dict[str, Any], node: str) -> np.ndarray:
    (saved,) = entry["outputs"][node]["images"]
    with Image.open(comfy.root / "output" / saved["subfolder"] / saved["filename"]) as picture:
        return np.asarray(picture.convert("RGB"))


def test_an_edit_with_a_reference_gives_the_pixels_of_comfyuis_own_template(comfy: ComfyUI, object_info) -> None:
    """Issue 22, findings 7 and 9: the 768x512 image to edit and a 384x384 reference, both scaled up to
    about 1 MP, at the template's 4 steps, give exactly the template graph's image (one prompt, so
    ComfyUI encodes the shared prompt once)."""
    needs_native_flux2(object_info)
    workflow = load(EXAMPLE)
    prompt = to_api_prompt(workflow, object_info)
    edit = prompt["6"]["inputs"]
    prompt["20"] = {"class_type": "LoadImage", "inputs": {"image": "flux2_flex_teapot.png"}}
    prompt["21"] = {"class_type": REFERENCE_BATCH_NODE, "inputs": {"image_1": ["20", 0]}}
    edit.update(references=["21", 0], steps=50)  # template_defaults (on) replaces the 50 with the template's 4
    prompt = template_edit(prompt, image=edit["image"], reference=["20", 0], text=edit["prompt"], seed=edit["seed"])
    entry = comfy.run(prompt, None, NATIVE_RUN_SECONDS)
    assert entry["status"]["status_str"] == "success", entry["status"]
    ours, template = saved_pixels(comfy, entry, "7"), saved_pixels(comfy, entry, "122")
    assert ours.shape == template.shape == (832, 1248, 3)
    assert np.array_equal(ours, template)


def test_without_native_flux2_the_node_says_so_and_is_refused(comfy: ComfyUI, object_info) -> None:
    if "EmptyFlux2LatentImage" in object_info:
        pytest.skip("this ComfyUI has native FLUX.2")
    node = object_info[NATIVE_MODEL_NODE]
    assert node["display_name"].endswith("needs native FLUX.2")
    assert "no native FLUX.2 support" in node["description"] and "Local Model (diffusers)" in node["description"]
    assert "FluxFlexLocalModel" in object_info, "the diffusers path remains"
    response = comfy.queue(to_api_prompt(load(EXAMPLE), object_info))
    assert response.status_code == 400
    assert "This ComfyUI has no native FLUX.2 support (missing" in response.text
