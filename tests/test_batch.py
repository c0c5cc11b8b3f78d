"""Batches: in flight together, results in input order, a failure or cancel never loses a paid image."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from comfyui_flux2_flex.nodes.engine.batch import BatchError, generate_batch
from comfyui_flux2_flex.nodes.engine.errors import CancelledError
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider
from comfyui_flux2_flex.nodes.engine.providers.tasks import SubmittedTask
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, seeded_requests
from comfyui_flux2_flex.nodes.engine.runner import PreparedRequest, RunHooks, prepare
from fakes.bfl_server import FakeBfl, TaskPlan

REQUEST = FlexRequest(prompt="a lighthouse", width=128, height=128, seed=10)
BARRIER_TIMEOUT = 10.0  # only reached when the items do not overlap, which fails the test


def plan_by_seed(fake: FakeBfl, monkeypatch: pytest.MonkeyPatch, plans: dict[int, TaskPlan]) -> None:
    """Give each task the plan for its seed, whatever order the threads submit in."""
    create = fake._create_task

    def create_with_seed_plan(body, sizes):
        fake.plans.appendleft(plans.get(body["seed"], TaskPlan()))
        return create(body, sizes)

    monkeypatch.setattr(fake, "_create_task", create_with_seed_plan)


def batch_of(provider: BflProvider, count: int) -> list[PreparedRequest]:
    return [prepare(request, provider) for request in seeded_requests(REQUEST, count)]


def test_seeds_count_up_and_a_random_seed_stays_random() -> None:
    assert [r.seed for r in seeded_requests(REQUEST, 3)] == [10, 11, 12]
    assert [r.seed for r in seeded_requests(replace(REQUEST, seed=None), 2)] == [None, None]


def test_all_items_are_in_flight_at_once_and_come_back_in_input_order(fake_bfl: FakeBfl, bfl: BflProvider,
                                                                      monkeypatch) -> None:
    # Earlier items take longer, so they tend to finish last; the order must still be the input order.
    plan_by_seed(fake_bfl, monkeypatch, {10 + i: TaskPlan(latency=0.1 * (8 - i)) for i in range(8)})
    together = threading.Barrier(8, timeout=BARRIER_TIMEOUT)  # passes only when all 8 were submitted
    results = generate_batch(batch_of(bfl, 8), bfl, hooks=RunHooks(on_submitted=lambda task: together.wait()))
    assert [r.seed for r in results] == list(range(10, 18))
    seeds_by_task = {task_id: task.body["seed"] for task_id, task in fake_bfl.tasks.items()}
    assert [seeds_by_task[r.task_id] for r in results] == list(range(10, 18))
    assert fake_bfl.peak_active == 8 and len(fake_bfl.submits) == 8


def test_max_concurrency_caps_the_tasks_in_flight(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    pairs = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    results = generate_batch(batch_of(bfl, 4), bfl, max_concurrency=2,
                             hooks=RunHooks(on_submitted=lambda task: pairs.wait()))
    assert len(results) == 4 and fake_bfl.peak_active == 2


def test_progress_is_one_bar_for_the_whole_batch(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    seen: list[tuple[float | None, str]] = []
    lock = threading.Lock()

    def record(fraction: float | None, status: str) -> None:
        with lock:
            seen.append((fraction, status))

    generate_batch(batch_of(bfl, 3), bfl, hooks=RunHooks(on_progress=record))
    assert max(fraction for fraction, _ in seen if fraction is not None) == 1.0
    assert {status.split(":")[0] for _, status in seen} == {"image 1", "image 2", "image 3"}
    assert (1 / 3, "image 1: downloading") not in seen, "the bar shows the batch, not one item"


def test_a_failed_item_is_named_and_the_others_are_kept(fake_bfl: FakeBfl, bfl: BflProvider, monkeypatch) -> None:
    plan_by_seed(fake_bfl, monkeypatch, {12: TaskPlan(statuses=["Pending", "Content Moderated"])})
    with pytest.raises(BatchError) as caught:
        generate_batch(batch_of(bfl, 4), bfl)
    assert sorted(caught.value.failures) == [2]
    assert sorted(caught.value.results) == [0, 1, 3]
    assert [caught.value.results[i].seed for i in (0, 1, 3)] == [10, 11, 13]
    assert "1 of 4 images failed" in str(caught.value) and "image 3 (seed 12)" in str(caught.value)
    assert len(fake_bfl.submits) == 4, "nothing was resubmitted"


def test_cancel_stops_every_item_and_names_every_paid_task(fake_bfl: FakeBfl, bfl: BflProvider, monkeypatch) -> None:
    # Item 1 finishes at its first poll; items 2 and 3 would never finish without the cancel.
    plan_by_seed(fake_bfl, monkeypatch, {10: TaskPlan(statuses=["Ready"]), 11: TaskPlan(statuses=["Pending"]),
                                         12: TaskPlan(statuses=["Pending"])})
    submitted: list[SubmittedTask] = []

    def cancelled() -> bool:
        first_done = any(t.body["seed"] == 10 and t.ready_at for t in list(fake_bfl.tasks.values()))
        return len(submitted) == 3 and first_done

    with pytest.raises(CancelledError) as caught:
        generate_batch(batch_of(bfl, 3), bfl, hooks=RunHooks(is_cancelled=cancelled, on_submitted=submitted.append))
    message = str(caught.value)
    assert all(task.task_id in message for task in submitted)
    assert "3 task(s) had been submitted and are billed" in message and "1 of them had finished" in message
    assert len(fake_bfl.submits) == 3


def test_a_cancel_before_submitting_bills_nothing(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    with pytest.raises(CancelledError, match=r"0 task\(s\).*\(none\)"):
        generate_batch(batch_of(bfl, 3), bfl, hooks=RunHooks(is_cancelled=lambda: True))
    assert fake_bfl.submits == []
