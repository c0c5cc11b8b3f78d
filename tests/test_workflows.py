"""The bundled example workflows load: known node types, valid links, images that exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.logic.node_runs import NODE_IDS
from workflow_format import WORKFLOWS, link_problems, load, workflow_files

CORE_NODES = {"LoadImage", "SaveImage", "PreviewImage", "UNETLoader", "CLIPLoader", "VAELoader"}
FILES = workflow_files()


def test_one_workflow_per_use_is_bundled() -> None:
    names = {path.stem for path in FILES}
    assert names == {"flux2_flex_text_to_image_typography", "flux2_flex_edit_image",
                     "flux2_flex_multi_reference_edit", "flux2_flex_cost_preview", "flux2_flex_local_model",
                     "flux2_flex_comfyui_klein_edit"}
    used = {node["type"] for path in FILES for node in load(path)["nodes"]}
    assert set(NODE_IDS) <= used, "every node of the pack appears in an example"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_workflow_is_ui_format_with_known_nodes_and_valid_links(path: Path) -> None:
    workflow = load(path)
    assert workflow["version"] == 0.4 and {"nodes", "links", "last_node_id", "last_link_id"} <= set(workflow)
    for node in workflow["nodes"]:
        assert node["type"] in CORE_NODES | set(NODE_IDS), node["type"]
    assert link_problems(workflow) == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_load_image_inputs_are_shipped_small_images(path: Path) -> None:
    for node in load(path)["nodes"]:
        if node["type"] == "LoadImage":
            image = WORKFLOWS / "input_images" / node["widgets_values"][0]
            assert image.stat().st_size < 300_000
            with Image.open(image) as picture:
                assert picture.format == "PNG"


def test_the_comfyui_files_example_uses_comfyuis_standard_klein_file_names() -> None:
    workflow = load(WORKFLOWS / "flux2_flex_comfyui_klein_edit.json")
    loaders = {node["type"]: node["widgets_values"] for node in workflow["nodes"] if node["type"] in CORE_NODES}
    assert loaders["UNETLoader"][0] == "flux-2-klein-4b.safetensors"
    assert loaders["CLIPLoader"][:2] == ["qwen_3_4b.safetensors", "flux2"]
    assert loaders["VAELoader"] == ["flux2-vae.safetensors"]


def test_no_workflow_carries_a_key_widget() -> None:
    for path in FILES:
        text = path.read_text()
        assert "api_key" not in text and "x-key" not in text
