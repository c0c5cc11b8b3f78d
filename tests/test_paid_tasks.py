"""Never lose a paid image: each fault a provider or the machine can throw at a paid run, against
the loopback BFL, with how many submits it cost and whether the image still arrived."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.batch import generate_batch
from comfyui_flux2_flex.nodes.engine.durable import generate_cached, recover
from comfyui_flux2_flex.nodes.engine.journal import DELIVERED, EXPIRED, SUBMITTED, TaskJournal
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider
from comfyui_flux2_flex.nodes.engine.providers.tasks import SubmittedTask
from comfyui_flux2_flex.nodes.engine.request import FlexRequest
from comfyui_flux2_flex.nodes.engine.result_cache import ResultCache
from comfyui_flux2_flex.nodes.engine.runner import RunHooks, RunSettings, prepare

from fakes.bfl_server import TaskPlan
from fakes.loopback import Response

FAST = RunSettings(submit_retry_seconds=5.0, task_timeout_seconds=60.0)
OUTLASTS_TIMEOUT = 1.0  # a task's seconds: over three times the 0.3 s task timeouts below, short for the rerun
REQUEST = FlexRequest(prompt="a red fox", width=256, height=192, seed=7)
EXPIRED_LINK = Response(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")


@pytest.fixture
def journal(tmp_path: Path) -> TaskJournal:
    return TaskJournal(tmp_path / "journal")


def run(bfl: BflProvider, journal: TaskJournal | None, *, request: FlexRequest = REQUEST, cache=None, **kwargs):
    return generate_cached(prepare(request, bfl), bfl, cache, journal=journal,
                           settings=kwargs.pop("settings", FAST), **kwargs)


def cancel_when(condition) -> RunHooks:
    return RunHooks(is_cancelled=condition)


def test_the_task_is_journaled_before_the_first_poll_without_the_key(fake_bfl, bfl, journal) -> None:
    seen: list[str] = []
    fake_bfl.plans.append(TaskPlan(statuses=["Pending", "Ready"]))
    hooks = RunHooks(on_progress=lambda f, s: seen.extend(e.state for e in journal.entries() if s == "Pending"))
    result = run(bfl, journal, hooks=hooks)
    assert seen and seen[0] == SUBMITTED, "the record existed while the task was still being polled"
    [entry] = journal.entries()
    assert (entry.task_id, entry.state, entry.provider) == (result.task_id, DELIVERED, "bfl")
    assert entry.poll_url.startswith(fake_bfl.cluster.url) and entry.price.startswith("bfl: $")
    for path in journal.folder.glob("*.json"):
        assert fake_bfl.api_key not in path.read_text(), "the journal never holds a key"


def test_a_single_403_on_a_poll_is_polled_past_and_delivers(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Pending", "Pending", "Ready"], poll_http_errors={1: 403}))
    result = run(bfl, journal)
    assert result.pixels.shape == (192, 256, 3)
    assert len(fake_bfl.submits) == 1


def test_a_key_refused_on_every_poll_names_the_task_and_a_rerun_resumes_it(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Ready"], poll_http_errors={i: 403 for i in range(4)}))
    with pytest.raises(errors.AuthenticationError) as refused:
        run(bfl, journal)
    task_id = refused.value.task_id
    assert task_id in str(refused.value) and f"flux-flex recover {task_id}" in str(refused.value)
    assert (refused.value.provider, refused.value.billed) == ("bfl", errors.MAYBE_BILLED)
    assert "was paid (estimate bfl: $" in str(refused.value)
    result = run(bfl, journal)
    assert result.task_id == task_id and "resumed" in result.report()
    assert len(fake_bfl.submits) == 1


def test_a_503_after_the_task_was_created_is_not_resubmitted(fake_bfl, bfl, journal) -> None:
    fake_bfl.after_create_script.append(Response.json({"detail": "Service Unavailable"}, 503, {"Retry-After": "0"}))
    with pytest.raises(errors.SubmitOutcomeUnknown, match="may or may not have been created") as unknown:
        run(bfl, journal)
    assert len(fake_bfl.submits) == 1 and len(fake_bfl.tasks) == 1
    assert "Nothing was created" not in str(unknown.value)


def test_a_full_cache_costs_the_cache_entry_not_the_paid_images(fake_bfl, bfl, journal, tmp_path) -> None:
    blocked = tmp_path / "cache-on-a-full-disk"
    blocked.write_bytes(b"")  # a file where the folder should be: every write fails with an OSError
    prepared = [prepare(REQUEST.with_seed(seed), bfl) for seed in range(4)]
    results = generate_batch(prepared, bfl, cache=ResultCache(blocked), journal=journal, settings=FAST)
    assert [result.seed for result in results] == [0, 1, 2, 3]
    assert all("not stored in the result cache" in result.report() for result in results)
    assert len(fake_bfl.submits) == 4


def test_an_expired_result_link_is_fetched_again_from_the_task(fake_bfl, bfl, journal) -> None:
    fake_bfl.delivery_script.append(EXPIRED_LINK)
    result = run(bfl, journal)
    assert result.pixels.shape == (192, 256, 3)
    assert len(fake_bfl.submits) == 1 and len(fake_bfl.delivery.requests) == 2


def test_a_truncated_download_is_fetched_again(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Ready"]))
    cut = Response(200, b"\x89PNG\r\n\x1a\n" + bytes(5000), truncate_to=100)
    fake_bfl.delivery_script.extend([cut] * 3)  # every try of the first download breaks off
    result = run(bfl, journal)
    assert result.pixels.shape == (192, 256, 3)
    assert len(fake_bfl.submits) == 1 and len(fake_bfl.delivery.requests) == 4


def test_a_result_that_is_not_an_image_is_fetched_again(fake_bfl, bfl, journal) -> None:
    fake_bfl.delivery_script.append(Response(200, b"<html>gateway error</html>"))
    result = run(bfl, journal)
    assert result.pixels.shape == (192, 256, 3) and len(fake_bfl.submits) == 1


def test_a_trickling_download_stops_at_its_deadline_and_a_rerun_delivers(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Ready"]))
    fake_bfl.delivery_script.append(Response(200, b"x" * 1000, seconds_per_byte=0.2))
    with pytest.raises(errors.ProviderUnavailableError, match="did not finish within 0.5 s") as stopped:
        run(bfl, journal, settings=RunSettings(task_timeout_seconds=10.0, download_seconds=0.5))
    assert stopped.value.task_id and "recover" in str(stopped.value)
    result = run(bfl, journal)
    assert result.task_id == stopped.value.task_id and len(fake_bfl.submits) == 1


def test_cancel_during_a_trickling_download_names_the_paid_task(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Ready"]))
    fake_bfl.delivery_script.append(Response(200, b"x" * 1000, seconds_per_byte=0.2))
    downloading = threading.Event()
    hooks = RunHooks(on_progress=lambda f, s: s == "downloading" and downloading.set(),
                     is_cancelled=lambda: downloading.is_set() and len(fake_bfl.delivery.requests) > 0)
    with pytest.raises(errors.CancelledError) as cancelled:
        run(bfl, journal, hooks=hooks)
    assert cancelled.value.task_id in str(cancelled.value) and "recover" in str(cancelled.value)
    assert journal.find(cancelled.value.task_id).state == SUBMITTED


def test_cancel_during_a_hung_poll_ends_the_run_and_a_rerun_resumes(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Pending", "Ready"], poll_delays={1: 60.0}))
    hooks = cancel_when(lambda: len(fake_bfl.cluster.requests) >= 2)  # the second poll is hanging
    with pytest.raises(errors.CancelledError) as cancelled:
        run(bfl, journal, hooks=hooks)
    result = run(bfl, journal)
    assert result.task_id == cancelled.value.task_id and len(fake_bfl.submits) == 1


def test_a_hung_poll_counts_as_a_failed_poll(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Pending", "Pending", "Ready"], poll_delays={1: 3.0}))
    result = run(bfl, journal, settings=RunSettings(task_timeout_seconds=20.0, poll_request_seconds=0.3))
    assert result.pixels.shape == (192, 256, 3) and len(fake_bfl.submits) == 1


def test_a_timeout_then_a_rerun_resumes_the_task_instead_of_paying(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(latency=OUTLASTS_TIMEOUT))
    with pytest.raises(errors.GenerationTimeoutError) as timed_out:
        run(bfl, journal, settings=RunSettings(task_timeout_seconds=0.3))
    listed = [entry.task_id for entry in journal.undelivered()]
    assert listed == [timed_out.value.task_id]
    result = run(bfl, journal)
    assert result.task_id == timed_out.value.task_id and len(fake_bfl.submits) == 1
    assert journal.undelivered() == []


def test_recover_fetches_a_paid_task_by_id(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(latency=OUTLASTS_TIMEOUT))
    with pytest.raises(errors.GenerationTimeoutError) as timed_out:
        run(bfl, journal, settings=RunSettings(task_timeout_seconds=0.3))
    result = recover(journal.find(timed_out.value.task_id), bfl, journal, settings=FAST)
    assert result.pixels.shape == (192, 256, 3) and result.seed == 7
    assert "nothing new was paid" in result.report() and len(fake_bfl.submits) == 1


def test_a_task_the_provider_forgot_is_reported_not_resubmitted(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Pending"] * 20))
    with pytest.raises(errors.GenerationTimeoutError) as timed_out:
        run(bfl, journal, settings=RunSettings(task_timeout_seconds=0.3))
    del fake_bfl.tasks[timed_out.value.task_id]  # BFL no longer knows it
    with pytest.raises(errors.ResultExpiredError, match="run again to pay for a new image"):
        run(bfl, journal)
    assert journal.find(timed_out.value.task_id).state == EXPIRED and len(fake_bfl.submits) == 1
    run(bfl, journal)  # asked again, knowing: a new task
    assert len(fake_bfl.submits) == 2


def test_a_task_older_than_any_retention_is_skipped_saying_so(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Pending"] * 20))
    with pytest.raises(errors.GenerationTimeoutError) as timed_out:
        run(bfl, journal, settings=RunSettings(task_timeout_seconds=0.3))
    [path] = journal.folder.glob("*.json")
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "created": record["created"] - 2 * 3600}))
    result = run(bfl, journal)
    assert result.task_id != timed_out.value.task_id and "too old to resume" in result.report()
    assert journal.find(timed_out.value.task_id).state == EXPIRED


def test_moderation_after_submit_marks_the_task_failed_and_names_it(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Content Moderated"]))
    with pytest.raises(errors.ModeratedError) as moderated:
        run(bfl, journal)
    assert journal.find(moderated.value.task_id).state == "failed"
    assert moderated.value.task_id in str(moderated.value)


def test_a_batch_with_random_seeds_resumes_distinct_tasks(fake_bfl, bfl, journal) -> None:
    random_seed = FlexRequest(prompt="a red fox", width=256, height=192, seed=None)
    fake_bfl.plans.extend(TaskPlan(latency=OUTLASTS_TIMEOUT) for _ in range(2))
    prepared = [prepare(random_seed, bfl)] * 2
    with pytest.raises(errors.FluxFlexError):
        generate_batch(prepared, bfl, journal=journal, settings=RunSettings(task_timeout_seconds=0.3))
    results = generate_batch(prepared, bfl, journal=journal, settings=FAST)
    assert len({result.task_id for result in results}) == 2 and len(fake_bfl.submits) == 2


def test_two_runs_of_one_request_at_once_pay_once(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(latency=0.6))
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(run(bfl, TaskJournal(journal.folder))))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and len(fake_bfl.submits) == 1
    assert np.array_equal(results[0].pixels, results[1].pixels)


def test_after_an_unknown_submit_outcome_a_rerun_says_so_once_before_sending(fake_bfl, bfl, journal) -> None:
    fake_bfl.after_create_script.append(Response(502, b"Bad Gateway"))
    with pytest.raises(errors.SubmitOutcomeUnknown, match="Running the same request again will first say so"):
        run(bfl, journal)
    [doubt] = journal.undelivered()
    assert doubt.state == "outcome unknown" and doubt.poll_url == ""
    with pytest.raises(errors.SubmitOutcomeUnknown, match="Not sent: an earlier submit of this request"):
        run(bfl, journal)
    assert len(fake_bfl.submits) == 1
    assert run(bfl, journal).pixels.shape == (192, 256, 3)
    assert len(fake_bfl.submits) == 2 and journal.undelivered() == []


def test_a_retry_after_beyond_the_wait_gives_up_at_once_saying_nothing_was_created(fake_bfl, bfl, journal) -> None:
    fake_bfl.submit_script.append(Response.json({"detail": "Too many active tasks"}, 429, {"Retry-After": "3600"}))
    with pytest.raises(errors.RateLimitedError, match="Nothing was created or billed"):
        run(bfl, journal)
    assert len(fake_bfl.submits) == 1 and not fake_bfl.tasks and journal.entries() == []


def test_a_write_cut_short_by_a_crash_leaves_the_journal_readable(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(latency=OUTLASTS_TIMEOUT))
    with pytest.raises(errors.GenerationTimeoutError) as timed_out:
        run(bfl, journal, settings=RunSettings(task_timeout_seconds=0.3))
    [record] = journal.folder.glob("*.json")
    (journal.folder / ".tmp-crashed.json").write_text(record.read_text().replace("submitted", "delivered"))
    (journal.folder / "garbage.json").write_bytes(record.read_bytes()[:40])  # a file some other tool cut short
    assert [entry.task_id for entry in journal.undelivered()] == [timed_out.value.task_id]
    assert run(bfl, journal).task_id == timed_out.value.task_id and len(fake_bfl.submits) == 1


def test_records_a_week_old_are_forgotten(fake_bfl, bfl, journal) -> None:
    fake_bfl.plans.append(TaskPlan(latency=OUTLASTS_TIMEOUT))
    with pytest.raises(errors.GenerationTimeoutError):
        run(bfl, journal, settings=RunSettings(task_timeout_seconds=0.3))
    [path] = journal.folder.glob("*.json")
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "created": record["created"] - 8 * 86400,
                                "updated": record["updated"] - 8 * 86400}))
    run(bfl, journal, request=REQUEST.with_seed(8))  # finishing another task prunes
    assert [entry.seed for entry in journal.entries()] == [8]


def test_a_task_whose_run_holds_its_lease_is_not_taken_over_and_a_dead_runs_is(fake_bfl, bfl, journal) -> None:
    """Issue 22, finding 3: in flight is told from crashed by the run's lease, which dies with its process."""
    task = SubmittedTask("bfl", "t-lease", fake_bfl.cluster.url + "/v1/get_result?id=t-lease")
    estimate = prepare(FlexRequest(prompt="a red fox", width=256, height=192), bfl).estimate
    with journal.lease() as owner:
        entry = journal.record(task, fingerprint="f", estimate=estimate, summary="", seed=None, owner=owner)
        assert journal.in_flight(entry) and journal.claim("bfl", "f") is None
    assert not journal.in_flight(entry) and journal.claim("bfl", "f").task_id == "t-lease"
    crashed = journal.folder / "leases" / "crashed-run.lock"
    crashed.touch()  # a run killed with its lease file in place: the OS dropped its lock
    left = journal.record(task, fingerprint="g", estimate=estimate, summary="", seed=None, owner="crashed-run")
    assert not journal.in_flight(left) and not crashed.exists()
