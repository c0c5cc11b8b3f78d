"""Generate and Edit on ComfyUI's own FLUX.2 files and nodes, inside a real ComfyUI.

Against a ComfyUI with native FLUX.2 (0.33.0): the subgraph Generate and Edit expand into is checked
against the node definitions ComfyUI publishes (/object_info), and the bundled example runs end to
end on the CPU through ComfyUI's UNETLoader, CLIPLoader and VAELoader on a tiny random-weight klein
(tiny_comfy_flux2.py says what ComfyUI accepts). Against one without (0.3.64): the node says so in
the node list and a prompt using it is refused with that message, while the diffusers node stays.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from PIL import Image

from comfyui_flux2_flex.nodes.logic.native_flux2 import (
    DEV, KLEIN_BASE, KLEIN_DISTILLED, REFERENCE_LATENTS_NODE, NativeModel, NativeSources, expand_native,
)
from comfyui_flux2_flex.nodes.logic.node_runs import NATIVE_MODEL_NODE, NodeSettings
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


@pytest.mark.parametrize("kind", [DEV, KLEIN_DISTILLED, KLEIN_BASE])
@pytest.mark.parametrize("edit", [False, True], ids=["generate", "edit"])
def test_the_expansion_uses_comfyuis_flux2_nodes_as_they_are_defined(kind: str, edit: bool, object_info) -> None:
    needs_native_flux2(object_info)
    references = collect_references([("image_1", torch.rand(1, 1100, 1000, 3)), ("image_2", torch.rand(1, 64, 80, 3))])
    builder = RecordingBuilder()
    settings = NodeSettings(provider="bfl", prompt="a red kite", aspect_ratio="3:2", megapixels=1.0, steps=28,
                            guidance=4.5, seed=2**32 - 10, batch_size=3)
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
        assert picture.size == (768, 512), "the street photo's own size, as a remote edit keeps it"
        low, high = picture.convert("L").getextrema()
        assert low < high, "random weights give a varied picture, not one flat colour"
    report = entry["outputs"]["6"]["flux2_flex"][0]["report"]
    assert "Ran on ComfyUI's own FLUX.2 nodes: klein distilled, from the file name flux-2-klein-4b.safetensors" in report
    assert "guidance 5 ignored" in report and "edit image -> VAEEncode + ReferenceLatent" in report
    log = comfy.log_path.read_text()
    assert "clip missing" in log, "ComfyUI's CLIPLoader loaded the text encoder file"
    assert "Flux2" in log, "ComfyUI's own loader detected and loaded the FLUX.2 diffusion model"
    assert "invalid value encountered" not in log, "no NaN reached SaveImage"

    again = comfy.run(prompt, workflow, NATIVE_RUN_SECONDS)
    cached = [m[1]["nodes"] for m in again["status"]["messages"] if m[0] == "execution_cached"]
    assert cached and "6" in cached[0], "ComfyUI's own cache answers the same settings"


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
