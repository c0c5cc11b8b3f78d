"""`flux-flex` never loses a paid image: a killed run is resumed by running it again, `tasks` and
`recover` fetch what was paid, two runs at once pay once, and --out is checked before paying.

The tests that start real `flux-flex` processes (killed, interrupted, racing each other) wait in
real time: those processes poll on BFL's own timing (a first poll after 1 s), which conftest's
tenth-of-real-time pace cannot reach in another process, and a kill must land between two polls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine.cli import main
from comfyui_flux2_flex.nodes.engine.journal import TaskJournal, default_journal_folder
from comfyui_flux2_flex.nodes.engine.pricing import CostEstimate
from comfyui_flux2_flex.nodes.engine.providers.tasks import SubmittedTask

from fakes.bfl_server import FakeBfl, TaskPlan
from fakes.loopback import LoopbackServer, Response

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


def test_a_failing_result_link_is_not_a_lost_task_and_a_rerun_resumes_it(bfl_env: FakeBfl, tmp_path: Path,
                                                                         capsys) -> None:
    """Finding 1 of issue 22: three 404 downloads while BFL still says Ready are the link's word, not
    the provider's: the task stays listed and the rerun fetches it without paying again."""
    bfl_env.delivery_script.extend(Response(404, b"not found") for _ in range(3))
    out = tmp_path / "fox.png"
    assert main(generate_args(out)) == 1
    [task_id] = bfl_env.tasks
    err = capsys.readouterr().err
    assert f"flux-flex recover {task_id}" in err and "cannot be recovered" not in err
    assert main(["tasks"]) == 0 and task_id in capsys.readouterr().out
    assert main(generate_args(out)) == 0
    assert f"resumed BFL task {task_id}" in capsys.readouterr().out and len(bfl_env.submits) == 1


def test_a_result_redirect_to_another_port_of_its_host_is_not_followed(bfl_env: FakeBfl, tmp_path: Path,
                                                                      capsys) -> None:
    """Finding 2 of issue 22: another port of the result host is another service; its answer is never
    read, let alone quoted, and the paid task stays recoverable."""
    service = LoopbackServer(lambda request: Response(200, b"PRIVATE-SERVICE-ANSWER"))
    service.start()
    try:
        bfl_env.delivery_script.append(Response(302, headers={"Location": service.url + "/status"}))
        assert main(generate_args(tmp_path / "fox.png")) == 1
    finally:
        service.stop()
    err = capsys.readouterr().err
    [task_id] = bfl_env.tasks
    assert service.requests == [] and "PRIVATE-SERVICE" not in err
    assert "not followed" in err and f"flux-flex recover {task_id}" in err


def test_two_random_seed_runs_at_once_are_two_tasks(bfl_env: FakeBfl, tmp_path: Path) -> None:
    """Finding 3 of issue 22: a run without --seed never takes over the task of another run in flight."""
    bfl_env.plans.extend([TaskPlan(latency=1.5), TaskPlan(latency=0.5)])
    args = ["generate", "--prompt", "fox", "--width", "256", "--height", "192"]
    first = start([*args, "--out", str(tmp_path / "a.png")])
    wait_for(lambda: len(bfl_env.cluster.requests) >= 1)  # its task is journaled and being polled
    second = start([*args, "--out", str(tmp_path / "b.png")])
    reports = []
    for process in (first, second):
        out, err = process.communicate(timeout=HANG_GUARD_SECONDS)
        assert process.returncode == 0, err
        reports.append(out)
    assert len(bfl_env.submits) == 2 and "resumed" not in "".join(reports)
    assert [sum(task_id in report for task_id in bfl_env.tasks) for report in reports] == [1, 1]
    assert not any(task_id in reports[0] and task_id in reports[1] for task_id in bfl_env.tasks)


def test_a_damaged_journal_record_is_skipped_with_a_warning_naming_it(tmp_path: Path) -> None:
    """Finding 5 of issue 22: a record with an empty estimate made `tasks` and `recover` print a traceback."""
    journal = TaskJournal(default_journal_folder() / "journal")
    estimate = CostEstimate("bfl", 5.0, 0.05, ("5 credits",))
    good = journal.record(SubmittedTask("bfl", "good-task", "http://127.0.0.1:9/v1/get_result?id=good-task"),
                          fingerprint="f", estimate=estimate, summary="256x192, seed 5: fox", seed=5)
    damaged = journal.record(SubmittedTask("bfl", "damaged-task", "http://127.0.0.1:9/v1/get_result?id=damaged"),
                             fingerprint="g", estimate=estimate, summary="", seed=None)
    [damaged_path] = [path for path in journal.folder.glob("*.json") if "damaged-task" in path.read_text()]
    damaged_path.write_text(json.dumps({**json.loads(damaged_path.read_text()), "estimate": {}}))
    listed = subprocess.run([str(SCRIPT), "tasks"], capture_output=True, text=True, timeout=HANG_GUARD_SECONDS,
                            env=dict(os.environ), check=False)
    assert listed.returncode == 0 and good.task_id in listed.stdout and damaged.task_id not in listed.stdout
    assert str(damaged_path) in listed.stderr and "Traceback" not in listed.stderr
    recovered = subprocess.run([str(SCRIPT), "recover", damaged.task_id, "--out", str(tmp_path / "x.png")],
                               capture_output=True, text=True, timeout=HANG_GUARD_SECONDS, env=dict(os.environ),
                               check=False)
    assert recovered.returncode == 1 and "Traceback" not in recovered.stderr
    assert "flux-flex tasks" in recovered.stderr and str(damaged_path) in recovered.stderr


def test_a_crafted_cache_entry_is_skipped_with_a_warning_and_the_run_goes_on(bfl_env: FakeBfl, tmp_path: Path,
                                                                             caplog) -> None:
    """Finding 5 of issue 22: a cache entry without its estimate made `generate` raise KeyError."""
    cache = tmp_path / "cache"
    assert main(generate_args(tmp_path / "a.png", "--cache-dir", str(cache))) == 0
    [meta_path] = cache.glob("*.json")
    meta = json.loads(meta_path.read_text())
    del meta["estimate"]
    meta_path.write_text(json.dumps(meta))
    assert main(generate_args(tmp_path / "b.png", "--cache-dir", str(cache))) == 0
    assert str(meta_path) in caplog.text and len(bfl_env.submits) == 2


def test_a_redirect_on_submit_created_nothing_so_the_rerun_is_not_refused(bfl_env: FakeBfl, tmp_path: Path,
                                                                         capsys) -> None:
    """Finding 6 of issue 22: a 307 on submit was journaled as "may have been created"."""
    bfl_env.submit_script.append(Response(307, headers={"Location": "http://127.0.0.1:9/v1/flux-2-flex"}))
    assert main(generate_args(tmp_path / "fox.png")) == 1
    err = capsys.readouterr().err
    assert "redirect (HTTP 307)" in err and "nothing was created or billed" in err
    assert main(generate_args(tmp_path / "fox.png")) == 0 and len(bfl_env.submits) == 2


def test_a_key_with_a_non_ascii_character_is_refused_in_words(bfl_env: FakeBfl, tmp_path: Path, capsys,
                                                              monkeypatch) -> None:
    """Finding 6 of issue 22: such a key ended in a raw UnicodeEncodeError."""
    monkeypatch.setenv("BFL_API_KEY", "bfl-kéy-0123456789")
    assert main(generate_args(tmp_path / "fox.png")) == 1
    err = capsys.readouterr().err
    assert "cannot carry" in err and "BFL_API_KEY" in err and "kéy" not in err
    assert bfl_env.all_requests() == []


def test_an_out_path_no_file_can_be_written_to_is_refused_before_paying(bfl_env: FakeBfl, capsys) -> None:
    """Finding 6 of issue 22: os.access passes everything for root, so /proc/x.png was paid, then not saved."""
    assert main(generate_args(Path("/proc/x.png"))) == 1
    assert "not writable" in capsys.readouterr().err and bfl_env.all_requests() == []
