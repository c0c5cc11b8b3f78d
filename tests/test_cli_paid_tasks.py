"""`flux-flex` never loses a paid image: a killed run is resumed by running it again, `tasks` and
`recover` fetch what was paid, two runs at once pay once, and --out is checked before paying.

The tests that start real `flux-flex` processes (killed, interrupted, racing each other) wait in
real time: those processes poll on BFL's own timing (a first poll after 1 s), which conftest's
tenth-of-real-time pace cannot reach in another process, and a kill must land between two polls."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine.cli import main

from fakes.bfl_server import FakeBfl, TaskPlan
from fakes.loopback import Response

SCRIPT = Path(sys.executable).with_name("flux-flex")
HANG_GUARD_SECONDS = 60  # only stops a broken run from hanging the suite; nothing is timed


def generate_args(out: Path, *extra: str) -> list[str]:
    return ["generate", "--prompt", "fox", "--width", "256", "--height", "192", "--seed", "5", "--out", str(out),
            *extra]


def start(args: list[str]) -> subprocess.Popen:
    """A real `flux-flex` process with the test's environment (the stand-in's URL and key)."""
    return subprocess.Popen([str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))


def wait_for(condition) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "the stand-in never saw what the test waits for"
        time.sleep(0.05)


@pytest.mark.parametrize("name", ["noext", "out.txt"])
def test_a_bad_out_is_refused_before_paying(bfl_env: FakeBfl, tmp_path: Path, capsys, name: str) -> None:
    assert main(generate_args(tmp_path / name)) == 1
    assert "--out" in capsys.readouterr().err
    assert bfl_env.all_requests() == []


def test_a_reference_that_never_ends_is_refused(bfl_env: FakeBfl, tmp_path: Path, capsys) -> None:
    assert main(generate_args(tmp_path / "o.png", "--reference", "/dev/zero")) == 1
    assert "/dev/zero is not a regular file" in capsys.readouterr().err
    assert bfl_env.all_requests() == []


def test_a_reference_that_is_not_an_image_is_named(bfl_env: FakeBfl, tmp_path: Path, capsys) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    assert main(generate_args(tmp_path / "o.png", "--reference", str(notes))) == 1
    assert f"Reference image {notes} is not an image" in capsys.readouterr().err
    assert bfl_env.all_requests() == []


def test_a_killed_run_is_listed_recovered_and_resumed_without_paying_again(bfl_env: FakeBfl, tmp_path: Path,
                                                                           capsys) -> None:
    bfl_env.plans.append(TaskPlan(latency=3.0))
    out = tmp_path / "fox.png"
    process = start(generate_args(out))
    wait_for(lambda: len(bfl_env.cluster.requests) >= 1)  # submitted, and polled once
    process.kill()  # SIGKILL: no handler, no cleanup, as a crash or a power cut
    process.wait()
    assert main(["tasks"]) == 0
    [task_id] = bfl_env.tasks
    assert task_id in capsys.readouterr().out
    rerun = subprocess.run([str(SCRIPT), *generate_args(out)], capture_output=True, text=True,
                           timeout=HANG_GUARD_SECONDS, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed BFL task {task_id}" in rerun.stdout and len(bfl_env.submits) == 1
    with Image.open(out) as saved:
        assert saved.size == (256, 192)
    assert main(["recover", task_id, "--out", str(tmp_path / "again.webp")]) == 0
    assert (tmp_path / "again.webp").exists() and len(bfl_env.submits) == 1
    assert main(["tasks"]) == 0 and "No paid task is waiting" in capsys.readouterr().out


def test_ctrl_c_during_a_hung_poll_names_the_task_and_how_to_recover_it(bfl_env: FakeBfl, tmp_path: Path) -> None:
    bfl_env.plans.append(TaskPlan(statuses=["Pending", "Ready"], poll_delays={1: 120.0}))
    process = start(generate_args(tmp_path / "fox.png"))
    wait_for(lambda: len(bfl_env.cluster.requests) >= 2)  # the second poll hangs
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=HANG_GUARD_SECONDS)
    [task_id] = bfl_env.tasks
    assert process.returncode == 1
    assert "Cancelled" in err and f"flux-flex recover {task_id}" in err


def test_two_processes_asking_for_one_request_at_once_pay_once(bfl_env: FakeBfl, tmp_path: Path) -> None:
    bfl_env.plans.append(TaskPlan(latency=1.5))
    first, second = start(generate_args(tmp_path / "a.png")), start(generate_args(tmp_path / "b.png"))
    for process in (first, second):
        _, err = process.communicate(timeout=HANG_GUARD_SECONDS)
        assert process.returncode == 0, err
    assert len(bfl_env.submits) == 1
    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        assert a.tobytes() == b.tobytes()


def test_recover_of_an_unknown_task_says_where_to_look(tmp_path: Path, capsys) -> None:
    assert main(["recover", "no-such-task", "--out", str(tmp_path / "x.png")]) == 1
    assert "flux-flex tasks" in capsys.readouterr().err


def test_a_submit_with_an_unknown_outcome_is_listed_but_has_nothing_to_recover(bfl_env: FakeBfl, tmp_path: Path,
                                                                              capsys) -> None:
    bfl_env.after_create_script.append(Response(500, b"Internal Server Error"))
    assert main(generate_args(tmp_path / "fox.png")) == 1
    assert "may or may not have been created" in capsys.readouterr().err
    assert main(["tasks"]) == 0
    listed = capsys.readouterr().out
    assert "outcome unknown" in listed
    unknown_id = next(word for word in listed.split() if word.startswith("unknown-"))
    assert main(["recover", unknown_id, "--out", str(tmp_path / "x.png")]) == 1
    assert "dashboard" in capsys.readouterr().err and len(bfl_env.submits) == 1
