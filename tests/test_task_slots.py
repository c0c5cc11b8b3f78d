"""The 24-task cap of a key is shared by every process on the machine: two processes never
together exceed it, and a killed one leaves no slot behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from comfyui_flux2_flex.nodes.engine.keys import ApiKey
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider
from comfyui_flux2_flex.nodes.engine.slots import slots_folder, task_slots
from fakes.bfl_server import ACTIVE_TASK_LIMIT, FakeBfl, TaskPlan

WORKER = Path(__file__).resolve().parent / "batch_process.py"
PROCESS_TIMEOUT = 120.0  # only reached when something hangs, which fails the test
SUBMIT_PATH = "/v1/flux-2-flex"


def start_batch(fake: FakeBfl, count: int, first_seed: int) -> subprocess.Popen:
    env = {**os.environ, "BFL_API_KEY": fake.api_key, "FLUX_FLEX_BFL_URL": fake.api_url}
    return subprocess.Popen([sys.executable, str(WORKER), str(count), str(first_seed)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def refused_submits(fake: FakeBfl) -> int:
    """Submits the stand-in answered 429: every POST that created no task (none was invalid)."""
    posts = sum(1 for request in fake.api.requests if request.path == SUBMIT_PATH and request.method == "POST")
    return posts - len(fake.tasks)


def not_allowed_to_wait() -> None:
    raise AssertionError("no slot was free")


def test_two_processes_with_one_key_share_the_cap_and_are_never_refused(fake_bfl: FakeBfl) -> None:
    # Tasks long enough that both processes overlap: without shared slots, 32 > 24 meets 429s.
    fake_bfl.plans.extend(TaskPlan(latency=2.0) for _ in range(32))
    workers = [start_batch(fake_bfl, 16, seed) for seed in (1, 100)]
    outputs = [worker.communicate(timeout=PROCESS_TIMEOUT) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["16", "16"]
    assert len(fake_bfl.tasks) == 32
    assert fake_bfl.peak_active <= ACTIVE_TASK_LIMIT
    assert refused_submits(fake_bfl) == 0


def test_a_killed_process_leaves_no_slot_held(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    fake_bfl.plans.extend(TaskPlan(statuses=["Pending"]) for _ in range(8))  # never finish
    worker = start_batch(fake_bfl, 8, 1)
    try:
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while len(fake_bfl.tasks) < 8 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
        assert len(fake_bfl.tasks) == 8
        slots = task_slots(bfl)
        held_here = [slots.take(cancelled=not_allowed_to_wait) for _ in range(ACTIVE_TASK_LIMIT - 8)]
        with pytest.raises(AssertionError, match="no slot was free"):
            slots.take(cancelled=not_allowed_to_wait)  # the other process holds 8
    finally:
        worker.kill()
        worker.communicate(timeout=PROCESS_TIMEOUT)
    held_here.append(slots.take(cancelled=not_allowed_to_wait))  # the dead process's 8 are free again
    held_here.extend(slots.take(cancelled=not_allowed_to_wait) for _ in range(7))
    assert slots.held() == ACTIVE_TASK_LIMIT
    for slot in held_here:
        slot.release()
    assert slots.held() == 0


def test_the_slots_are_named_by_a_one_way_hash_of_the_key_never_the_key(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    task_slots(bfl).take(cancelled=not_allowed_to_wait).release()
    folder = slots_folder(bfl)
    assert folder.is_dir() and folder.name.startswith("bfl-")
    assert fake_bfl.api_key not in str(folder)
    assert all(path.read_bytes() == b"" for path in folder.iterdir())
    other = BflProvider(base_url=fake_bfl.api_url, api_key=ApiKey("another-account-key"))
    assert slots_folder(other) != folder
