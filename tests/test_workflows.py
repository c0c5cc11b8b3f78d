"""The bundled example workflows load: known node types, valid links, images that exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.logic.node_runs import NODE_IDS
from example_cards import CARDS
from workflow_format import (COST_ESTIMATE, EXAMPLES, LOCAL_COMFYUI, LOCAL_DIFFUSERS, NOTE_NODES, WORKFLOWS,
                             link_problems, load, workflow_files)

CORE_NODES = {"LoadImage", "SaveImage", "PreviewImage", "UNETLoader", "CLIPLoader", "VAELoader", *NOTE_NODES}
MODEL_HOST = "https://huggingface.co/"
FILES = workflow_files()


def test_one_workflow_per_use_is_bundled() -> None:
    assert set(FILES) == set(EXAMPLES)
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
    workflow = load(LOCAL_COMFYUI)
    loaders = {node["type"]: node["widgets_values"] for node in workflow["nodes"] if node["type"] in CORE_NODES}
    assert loaders["UNETLoader"][0] == "flux-2-klein-4b.safetensors"
    assert loaders["CLIPLoader"][:2] == ["qwen_3_4b.safetensors", "flux2"]
    assert loaders["VAELoader"] == ["flux2-vae.safetensors"]


def test_the_comfyui_files_example_offers_each_missing_file_as_comfyuis_templates_do() -> None:
    """ComfyUI's Missing Models panel reads properties.models on a loader: the file, its link, its folder."""
    for node in load(LOCAL_COMFYUI)["nodes"]:
        if node["type"] in ("UNETLoader", "CLIPLoader", "VAELoader"):
            [model] = node["properties"]["models"]
            assert model["name"] == node["widgets_values"][0] and model["url"].startswith(MODEL_HOST)
            assert model["url"].endswith("/" + model["name"])
            assert model["directory"] == {"UNETLoader": "diffusion_models", "CLIPLoader": "text_encoders",
                                          "VAELoader": "vae"}[node["type"]]


def test_the_local_examples_say_what_to_download_and_where() -> None:
    for path, where in ((LOCAL_DIFFUSERS, "models/diffusers/FLUX.2-klein-4B"), (LOCAL_COMFYUI, "models/vae/")):
        [note] = [node for node in load(path)["nodes"] if node["type"] == "MarkdownNote"]
        assert where in note["widgets_values"][0] and MODEL_HOST in note["widgets_values"][0]


def test_the_cost_example_shows_the_size_it_prices() -> None:
    """Its Cost Estimate prices the street picture's size (match_input_size), so its size widgets say that size."""
    workflow = load(COST_ESTIMATE)
    [estimate] = [node for node in workflow["nodes"] if node["type"] == "FluxFlexCostEstimate"]
    image_link = next(socket["link"] for socket in estimate["inputs"] if socket["name"] == "image")
    source = next(link[1] for link in workflow["links"] if link[0] == image_link)
    [picture] = [node["widgets_values"][0] for node in workflow["nodes"] if node["id"] == source]
    with Image.open(WORKFLOWS / "input_images" / picture) as image:
        assert estimate["widgets_values"][2:6] == ["custom", "1", *image.size]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_each_example_has_its_card_for_the_template_browser(path: Path) -> None:
    """ComfyUI shows <workflow>.jpg as a square card; tests/example_cards.py draws them."""
    assert path in CARDS
    with Image.open(path.with_suffix(".jpg")) as card:
        assert card.format == "JPEG" and card.width == card.height >= 256


def test_no_workflow_carries_a_key_widget() -> None:
    for path in FILES:
        text = path.read_text()
        assert "api_key" not in text and "x-key" not in text
