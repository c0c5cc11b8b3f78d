"""Paid tasks survive ComfyUI: a restart mid-poll, then the same prompt over /prompt resumes the
task instead of paying again; a Cancel logs the task id, and the Recover node brings its image."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfyui_runner import ComfyUI, needs_comfyui
from fakes.bfl_server import FakeBfl, TaskPlan
from workflow_format import TEXT_TO_IMAGE, load, to_api_prompt

pytestmark = needs_comfyui
HANG_GUARD_SECONDS = 60


@pytest.fixture
def paid_bfl() -> Iterator[FakeBfl]:
    with FakeBfl() as server:
        yield server


def wait_for(condition) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "the stand-in never saw what the test waits for"
        time.sleep(0.1)


def text_to_image_prompt(comfy: ComfyUI, seed: int) -> dict[str, Any]:
    workflow = load(TEXT_TO_IMAGE)
    prompt = to_api_prompt(workflow, comfy.client.get("/object_info").json())
    next(n for n in prompt.values() if n["class_type"] == "FluxFlexGenerate")["inputs"]["seed"] = seed
    return prompt


def saved_images(comfy: ComfyUI, entry: dict[str, Any]) -> list[Path]:
    return [comfy.root / "output" / image["subfolder"] / image["filename"]
            for output in entry["outputs"].values() for image in output.get("images", [])]


def test_a_restart_mid_poll_then_the_same_prompt_resumes_the_paid_task(paid_bfl: FakeBfl, tmp_path: Path) -> None:
    paid_bfl.plans.append(TaskPlan(latency=25.0))
    comfy = ComfyUI(tmp_path, paid_bfl)
    try:
        comfy.wait_until_up()
        prompt = text_to_image_prompt(comfy, seed=4242)
        assert comfy.queue(prompt).status_code == 200
        wait_for(lambda: len(paid_bfl.cluster.requests) >= 1)  # paid and polled
    finally:
        comfy.kill()
    [task_id] = paid_bfl.tasks
    journal = list((tmp_path / "user" / "flux2_flex" / "journal").glob("*.json"))
    assert len(journal) == 1 and task_id in journal[0].read_text()
    restarted = ComfyUI(tmp_path, paid_bfl)
    try:
        restarted.wait_until_up()
        entry = restarted.run(text_to_image_prompt(restarted, seed=4242))
        assert entry["status"]["status_str"] == "success", entry["status"]
        [image] = saved_images(restarted, entry)
        with Image.open(image) as picture:
            assert picture.width > 0
        assert len(paid_bfl.submits) == 1, "the rerun resumed the paid task instead of paying again"
    finally:
        restarted.stop()


def test_a_cancelled_task_is_logged_and_the_recover_node_brings_its_image(paid_bfl: FakeBfl, tmp_path: Path) -> None:
    paid_bfl.plans.append(TaskPlan(latency=4.0))
    comfy = ComfyUI(tmp_path, paid_bfl)
    try:
        comfy.wait_until_up()
        prompt_id = comfy.queue(text_to_image_prompt(comfy, seed=777)).json()["prompt_id"]
        wait_for(lambda: len(paid_bfl.cluster.requests) >= 1)
        comfy.client.post("/interrupt")
        assert comfy.wait_for(prompt_id)["status"]["status_str"] == "error"
        [task_id] = paid_bfl.tasks
        log = comfy.log_path.read_text()
        assert re.search(rf"{task_id}.*recover", log), "the log names the paid task and how to recover it"
        assert comfy.client.get("/flux2_flex/paid_tasks").json() == [task_id], "listed live, no reload"
        entry = comfy.run({"1": {"class_type": "FluxFlexRecoverTask", "inputs": {"task_id": task_id}}})
        assert entry["status"]["status_str"] == "success", entry["status"]
        shown = entry["outputs"]["1"]
        assert shown["images"] and task_id in shown["flux2_flex"][0]["report"], "previewed on the node, unwired"
        assert len(paid_bfl.submits) == 1
        waiting = comfy.client.get("/flux2_flex/paid_tasks").json()
        assert waiting == ["(no paid task is waiting)"]
        entry = comfy.run({"1": {"class_type": "FluxFlexRecoverTask", "inputs": {"task_id": waiting[0]}},
                           "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "r"}}})
        assert entry["status"]["status_str"] == "success", "none waiting is said, not a failure"
        assert entry["outputs"]["1"]["flux2_flex"][0]["report"].startswith("No paid task is waiting")
        assert not saved_images(comfy, entry)
    finally:
        comfy.stop()
