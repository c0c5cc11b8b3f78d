"""The pack inside real ComfyUI: loaded from custom_nodes, every example workflow run over /prompt.

Needs a ComfyUI checkout (COMFYUI_PATH) and the Python that runs it (COMFYUI_PYTHON); skipped
with the reason when they are absent, so the unit suite runs anywhere. ComfyUI talks to the
loopback BFL stand-in started here, through the same environment variables a user sets.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.node_logic import NODE_IDS
from fakes.bfl_server import FakeBfl, TaskPlan
from workflow_format import load, to_api_prompt, workflow_files

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON")
REPO_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    not (COMFYUI_PATH and COMFYUI_PYTHON),
    reason="set COMFYUI_PATH (a ComfyUI checkout) and COMFYUI_PYTHON (its Python) to run ComfyUI integration tests",
)
STARTUP_SECONDS = 180
RUN_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ComfyUI:
    """A ComfyUI server process with this pack linked in through extra_model_paths."""

    def __init__(self, root: Path, bfl: FakeBfl) -> None:
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "comfyui.log"
        for name in ("custom_nodes", "input", "output", "user"):
            (root / name).mkdir()
        (root / "custom_nodes" / "comfyui_flux2_flex").symlink_to(REPO_ROOT, target_is_directory=True)
        config = root / "extra_model_paths.yaml"
        config.write_text(f"flux2_flex_test:\n  base_path: {root}\n  custom_nodes: custom_nodes/\n")
        env = {**os.environ, "BFL_API_KEY": bfl.api_key, "FLUX_FLEX_BFL_URL": bfl.api_url, "PYTHONUNBUFFERED": "1"}
        command = [COMFYUI_PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--disable-auto-launch", "--input-directory", str(root / "input"),
                   "--output-directory", str(root / "output"), "--user-directory", str(root / "user"),
                   "--extra-model-paths-config", str(config)]
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(command, cwd=COMFYUI_PATH, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited: {self.log_path.read_text()[-3000:]}")
            try:
                if self.client.get("/system_stats").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError("ComfyUI did not start in time")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.client.close()
        self.log.close()

    def queue(self, prompt: dict[str, Any], workflow: dict[str, Any] | None = None) -> httpx.Response:
        body: dict[str, Any] = {"prompt": prompt, "client_id": str(uuid.uuid4())}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        return self.client.post("/prompt", json=body)

    def wait_for(self, prompt_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:
            history = self.client.get(f"/history/{prompt_id}").json()
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"]["status_str"] in ("success", "error"):
                    return entry
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} did not finish")

    def run(self, prompt: dict[str, Any], workflow: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.queue(prompt, workflow)
        assert response.status_code == 200, response.text
        return self.wait_for(response.json()["prompt_id"])


@pytest.fixture(scope="module")
def bfl() -> Iterator[FakeBfl]:
    with FakeBfl() as server:
        yield server


@pytest.fixture(scope="module")
def comfy(bfl: FakeBfl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyUI]:
    server = ComfyUI(tmp_path_factory.mktemp("comfyui"), bfl)
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def object_info(comfy: ComfyUI) -> dict[str, Any]:
    return comfy.client.get("/object_info").json()


def test_object_info_lists_the_four_nodes_with_their_inputs(object_info: dict[str, Any]) -> None:
    for node_id in NODE_IDS:
        assert object_info[node_id]["category"] == "FLUX.2 Flex"
        assert object_info[node_id]["description"]
    generate = object_info["FluxFlexGenerate"]["input"]["required"]
    assert {"provider", "prompt", "width", "height", "steps", "guidance", "seed", "safety_tolerance",
            "output_format", "prompt_upsampling", "batch_size"} <= set(generate)
    assert generate["steps"][1]["max"] == 50 and generate["seed"][1]["control_after_generate"]
    assert "image" in object_info["FluxFlexEdit"]["input"]["required"]
    assert "image_8" in object_info["FluxFlexReferenceBatch"]["input"]["optional"]
    for spec in generate.values():
        assert spec[1].get("tooltip"), "every input has a tooltip"


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.stem)
def test_every_example_workflow_runs(path: Path, comfy: ComfyUI, bfl: FakeBfl, object_info) -> None:
    workflow = load(path)
    entry = comfy.run(to_api_prompt(workflow, object_info), workflow)
    assert entry["status"]["status_str"] == "success", entry["status"]
    saved = [image for output in entry["outputs"].values() for image in output.get("images", [])]
    if "cost_preview" in path.stem:
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
        assert bfl.api_key not in chunks, "the key never reaches PNG metadata"
    assert bfl.api_key not in json.dumps(workflow)


def test_a_bad_value_is_refused_at_validation_before_any_request(comfy, bfl, object_info) -> None:
    workflow = load(workflow_files()[-1])  # text to image
    prompt = to_api_prompt(workflow, object_info)
    generate = next(node for node in prompt.values() if node["class_type"] == "FluxFlexGenerate")
    generate["inputs"]["guidance"] = 12.0
    submits = len(bfl.submits)
    response = comfy.queue(prompt)
    assert response.status_code == 400
    assert "guidance = 12.0 is not allowed: from 1.5 to 10" in response.text
    assert len(bfl.submits) == submits


def test_same_inputs_are_not_sent_again(comfy: ComfyUI, bfl: FakeBfl, object_info) -> None:
    workflow = load(workflow_files()[-1])
    prompt = to_api_prompt(workflow, object_info)
    comfy.run(prompt)
    submits = len(bfl.submits)
    comfy.run(prompt)
    assert len(bfl.submits) == submits, "ComfyUI's cache answers a fixed seed without a new request"


def test_cancel_stops_polling_and_interrupts(comfy: ComfyUI, bfl: FakeBfl, object_info) -> None:
    workflow = load(workflow_files()[-1])
    prompt = to_api_prompt(workflow, object_info)
    next(n for n in prompt.values() if n["class_type"] == "FluxFlexGenerate")["inputs"]["seed"] = 999
    bfl.plans.append(TaskPlan(statuses=["Pending"]))
    submits = len(bfl.submits)
    prompt_id = comfy.queue(prompt).json()["prompt_id"]
    deadline = time.monotonic() + 60
    while len(bfl.submits) == submits and time.monotonic() < deadline:
        time.sleep(0.2)
    comfy.client.post("/interrupt")
    entry = comfy.wait_for(prompt_id)
    assert entry["status"]["status_str"] == "error"
    assert any(message[0] == "execution_interrupted" for message in entry["status"]["messages"])
    polls = len(bfl.cluster.requests)
    time.sleep(1.5)
    assert len(bfl.cluster.requests) == polls
    assert len(bfl.submits) == submits + 1
    assert "already been submitted" in comfy.log_path.read_text()


def test_keys_are_stored_server_side_and_never_returned(comfy: ComfyUI) -> None:
    secret = "r8_test_secret_value_123"
    response = comfy.client.post("/flux2_flex/keys", json={"provider": "replicate", "key": secret})
    assert response.status_code == 200 and secret not in response.text
    assert response.json()["replicate"]["stored"] is True
    key_file = comfy.root / "user" / "flux2_flex" / "keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert secret not in comfy.client.get("/flux2_flex/keys").text
    assert comfy.client.post("/flux2_flex/keys", json={"provider": "nope", "key": "x"}).status_code == 400


def test_the_key_never_reaches_the_log(comfy: ComfyUI, bfl: FakeBfl) -> None:
    assert bfl.api_key not in comfy.log_path.read_text()
