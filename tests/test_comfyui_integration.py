"""The pack inside real ComfyUI: loaded from custom_nodes, every example workflow run over /prompt.

Needs a ComfyUI checkout (COMFYUI_PATH) and the Python that runs it (COMFYUI_PYTHON); skipped
with the reason when they are absent, so the unit suite runs anywhere. ComfyUI talks to the
loopback BFL stand-in started here, through the same environment variables a user sets.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.logic.node_runs import NODE_IDS
from comfyui_runner import NATIVE_RUN_SECONDS, RUN_SECONDS, ComfyUI, needs_comfyui
from fakes.bfl_server import FakeBfl, TaskPlan
from workflow_format import (COST_ESTIMATE, LOCAL_COMFYUI, LOCAL_DIFFUSERS, TEXT_TO_IMAGE, load, to_api_prompt,
                             workflow_files)

pytestmark = needs_comfyui


def test_object_info_lists_the_four_nodes_with_their_inputs(object_info: dict[str, Any]) -> None:
    for node_id in NODE_IDS:
        assert object_info[node_id]["category"] == "FLUX.2 [flex]"
        assert object_info[node_id]["description"]
    generate = object_info["FluxFlexGenerate"]["input"]["required"]
    assert {"provider", "prompt", "width", "height", "steps", "guidance", "seed", "safety_tolerance",
            "output_format", "prompt_upsampling", "batch_size"} <= set(generate)
    assert generate["steps"][1]["max"] == 50 and generate["seed"][1]["control_after_generate"]
    assert "image" in object_info["FluxFlexEdit"]["input"]["required"]
    assert "image_8" in object_info["FluxFlexReferenceBatch"]["input"]["optional"]
    for spec in generate.values():
        assert spec[1].get("tooltip"), "every input has a tooltip"


def test_no_node_is_a_comfy_org_partner_node_and_remote_runs_show_no_local_widgets(object_info) -> None:
    for node_id in NODE_IDS:
        definition = object_info[node_id]
        assert not definition.get("api_node"), "partner nodes send a signed-out user to a comfy.org sign-in"
        hidden = json.dumps(definition["input"].get("hidden", {}))
        assert "comfy_org" not in hidden and not definition.get("price_badge")
    for node_id in ("FluxFlexGenerate", "FluxFlexEdit"):
        inputs = object_info[node_id]["input"]
        assert not any(name.startswith("local_") for name in inputs["required"])
        assert inputs["optional"]["local_model"][0] == "FLUX2_FLEX_LOCAL_MODEL"
    loader = object_info["FluxFlexLocalModel"]
    assert loader["output"] == ["FLUX2_FLEX_LOCAL_MODEL"]
    assert {"model", "local_dtype", "local_offload", "local_quantization"} == set(loader["input"]["required"])


def test_the_price_route_answers_from_the_engine_with_the_picked_files_size(comfy: ComfyUI) -> None:
    question = {"node": "FluxFlexEdit", "widgets": {"provider": "bfl", "prompt": "x", "batch_size": 2},
                "image": {"files": ["flux2_flex_street.png"], "unknown": 0}, "references": None, "local": False}
    answer = comfy.client.post("/flux2_flex/price", json=question).json()
    assert answer["text"] == "$0.200 · 768x512" and not answer["problem"]
    question["widgets"]["provider"] = "fal"
    answer = comfy.client.post("/flux2_flex/price", json=question).json()
    assert answer["problem"] and answer["text"].endswith("no fal key: Settings > FLUX.2 Flex"), \
        "the route says whether a key exists (never the key)"
    question["widgets"]["provider"] = "bfl"
    question["image"]["files"] = ["../../../etc/passwd"]
    assert comfy.client.post("/flux2_flex/price", json=question).json()["text"].startswith("~"), \
        "a file outside ComfyUI's folders is never read: its size is unknown"
    assert comfy.client.post("/flux2_flex/price", json={"widgets": 3}).status_code == 400


def test_two_copies_of_the_pack_load_once_and_the_second_is_named(comfy_bfl: FakeBfl, tmp_path: Path) -> None:
    twice = ComfyUI(tmp_path, comfy_bfl, pack_copies=2)
    try:
        twice.wait_until_up()
        assert "FluxFlexGenerate" in twice.client.get("/object_info").json()
        log = twice.log_path.read_text()
        assert "a second copy of the pack at" in log and "comfyui_flux2_flex_copy1" in log
        assert not [line for line in log.splitlines() if "IMPORT FAILED" in line and "flux2_flex" in line]
    finally:
        twice.stop()


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.stem)
def test_every_example_workflow_runs(path: Path, comfy: ComfyUI, comfy_bfl: FakeBfl, object_info) -> None:
    if path == LOCAL_DIFFUSERS and not (comfy.root / "models" / "diffusers").is_dir():
        pytest.skip("ComfyUI's Python has no diffusers: the local example cannot run")
    native = path == LOCAL_COMFYUI
    if native and "EmptyFlux2LatentImage" not in object_info:
        pytest.skip("this ComfyUI has no native FLUX.2 (test_comfyui_native checks that the node says so)")
    workflow = load(path)
    entry = comfy.run(to_api_prompt(workflow, object_info), workflow, NATIVE_RUN_SECONDS if native else RUN_SECONDS)
    assert entry["status"]["status_str"] == "success", entry["status"]
    saved = [image for output in entry["outputs"].values() for image in output.get("images", [])]
    if path == COST_ESTIMATE:
        reports = [o["flux2_flex"][0]["report"] for o in entry["outputs"].values() if "flux2_flex" in o]
        assert any("$" in report and "billed as" in report for report in reports)
        return
    assert saved, "the workflow saved an image"
    for image in saved:
        file = comfy.root / "output" / image["subfolder"] / image["filename"]
        with Image.open(file) as picture:
            assert picture.width % 16 == 0 and picture.height % 16 == 0
            chunks = " ".join(str(value) for value in picture.text.values())
        assert "workflow" in picture.text and "prompt" in picture.text
        assert comfy_bfl.api_key not in chunks, "the key never reaches PNG metadata"
    assert comfy_bfl.api_key not in json.dumps(workflow)


def test_a_bad_value_is_refused_at_validation_before_any_request(comfy, comfy_bfl, object_info) -> None:
    workflow = load(TEXT_TO_IMAGE)
    prompt = to_api_prompt(workflow, object_info)
    generate = next(node for node in prompt.values() if node["class_type"] == "FluxFlexGenerate")
    generate["inputs"]["guidance"] = 12.0
    submits = len(comfy_bfl.submits)
    response = comfy.queue(prompt)
    assert response.status_code == 400
    [(node_id, entry)] = response.json()["node_errors"].items()
    [error] = entry["errors"]
    assert error["extra_info"]["input_name"] == "guidance", "once, at the input it names"
    assert "guidance = 12.0 is not allowed: from 1.5 to 10" in error["details"]
    assert len(comfy_bfl.submits) == submits


def test_a_missing_key_is_refused_at_validation_at_the_provider(comfy, comfy_bfl, object_info) -> None:
    workflow = load(TEXT_TO_IMAGE)
    prompt = to_api_prompt(workflow, object_info)
    next(n for n in prompt.values() if n["class_type"] == "FluxFlexGenerate")["inputs"]["provider"] = "cometapi"
    response = comfy.queue(prompt)
    assert response.status_code == 400
    [entry] = response.json()["node_errors"].values()
    [error] = entry["errors"]
    assert error["extra_info"]["input_name"] == "provider" and "No API key for cometapi" in error["details"]
    assert "COMETAPI_KEY" in error["details"] and comfy_bfl.api_key not in response.text


def test_same_inputs_are_not_sent_again(comfy: ComfyUI, comfy_bfl: FakeBfl, object_info) -> None:
    workflow = load(TEXT_TO_IMAGE)
    prompt = to_api_prompt(workflow, object_info)
    comfy.run(prompt)
    submits = len(comfy_bfl.submits)
    comfy.run(prompt)
    assert len(comfy_bfl.submits) == submits, "ComfyUI's cache answers a fixed seed without a new request"


def test_cancel_stops_polling_and_interrupts(comfy: ComfyUI, comfy_bfl: FakeBfl, object_info) -> None:
    workflow = load(TEXT_TO_IMAGE)
    prompt = to_api_prompt(workflow, object_info)
    next(n for n in prompt.values() if n["class_type"] == "FluxFlexGenerate")["inputs"]["seed"] = 999
    comfy_bfl.plans.append(TaskPlan(statuses=["Pending"]))
    submits = len(comfy_bfl.submits)
    prompt_id = comfy.queue(prompt).json()["prompt_id"]
    deadline = time.monotonic() + 60
    while len(comfy_bfl.submits) == submits and time.monotonic() < deadline:
        time.sleep(0.2)
    comfy.client.post("/interrupt")
    entry = comfy.wait_for(prompt_id)
    assert entry["status"]["status_str"] == "error"
    assert any(message[0] == "execution_interrupted" for message in entry["status"]["messages"])
    polls = len(comfy_bfl.cluster.requests)
    time.sleep(1.5)
    assert len(comfy_bfl.cluster.requests) == polls
    assert len(comfy_bfl.submits) == submits + 1
    assert "already been submitted" in comfy.log_path.read_text()


def test_keys_are_stored_server_side_and_never_returned(comfy: ComfyUI) -> None:
    secret = "r8_test_secret_value_123"
    response = comfy.client.post("/flux2_flex/keys", json={"provider": "replicate", "key": secret},
                                 headers=comfy.key_headers())
    assert response.status_code == 200 and secret not in response.text
    assert response.json()["replicate"]["stored"] is True
    key_file = comfy.root / "user" / "flux2_flex" / "keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert secret not in comfy.client.get("/flux2_flex/keys", headers=comfy.key_headers()).text
    assert comfy.client.post("/flux2_flex/keys", json={"provider": "nope", "key": "x"},
                             headers=comfy.key_headers()).status_code == 400


def test_the_key_never_reaches_the_log(comfy: ComfyUI, comfy_bfl: FakeBfl) -> None:
    assert comfy_bfl.api_key not in comfy.log_path.read_text()


def test_the_template_browser_lists_the_example_workflows(comfy: ComfyUI) -> None:
    templates = comfy.client.get("/api/workflow_templates").json()
    assert sorted(templates["comfyui_flux2_flex"]) == sorted(path.stem for path in workflow_files())
