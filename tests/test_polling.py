"""When the client polls: once mid-task, once right after the expected finish, and an estimate
of the finish that does not grow by the pickup delay task after task."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from comfyui_flux2_flex.nodes.engine.batch import generate_batch
from comfyui_flux2_flex.nodes.engine.polling import (
    AIM_MARGIN,
    DENSE_INTERVAL,
    DURATIONS,
    FIRST_POLL_CAP,
    MAX_AIM_MARGIN,
    MIN_AIM_MARGIN,
    PROBE_DOWN,
    SPARSE_INTERVAL,
    DurationHistory,
    PollSchedule,
    PollTiming,
    aimed_finish,
    finish_estimate,
    predicted_total,
)
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, seeded_requests
from comfyui_flux2_flex.nodes.engine.runner import generate, prepare
from fakes.bfl_server import FakeBfl, TaskPlan

# The end-to-end runs below keep BFL's documented timing at half speed: its first poll, the
# client's intervals and the stand-in's tasks all take half their real time, so the schedule keeps
# its shape (conftest's tenth is too coarse for the estimates these tests check within 50 ms).
PACE = 0.5
BFL_TIMING = replace(BflProvider.poll_timing, visible_after=BflProvider.poll_timing.visible_after * PACE, pace=PACE)
WITH_PROGRESS = PollTiming(visible_after=1.0, typical_seconds=16.0, reports_progress=True)
WITHOUT_PROGRESS = PollTiming(visible_after=1.0, typical_seconds=16.0, reports_progress=False)
REQUEST = FlexRequest(prompt="a kite", width=128, height=128, seed=1)
LATENCY = 1.2 * PACE  # the stand-in's task time in the end-to-end runs: past the first poll, so progress is read
LAG = 0.4 * PACE  # the stand-in answers "Task not found" this long after a submit, as BFL does
CLOSE = 0.1 * PACE  # how near the true duration an estimate must be


def simulate(schedule: PollSchedule, duration: float, progress_known: bool) -> tuple[int, float]:
    """One task on the schedule: how many polls until it is seen finished, and how late."""
    elapsed, polls, predicted = 0.0, 0, None
    while True:
        elapsed += schedule.next_delay(elapsed, polls, predicted)
        polls += 1
        if elapsed >= duration:
            return polls, elapsed - duration
        predicted = predicted_total(elapsed, elapsed / duration) if progress_known else None


def test_the_first_task_after_a_start_is_first_polled_once_the_provider_can_see_it() -> None:
    assert PollSchedule(None, WITH_PROGRESS).next_delay(0.0, 0) == WITH_PROGRESS.visible_after


def test_a_known_task_is_first_polled_halfway_but_not_before_it_is_visible_nor_late_in_a_long_one() -> None:
    assert PollSchedule(8.0, WITH_PROGRESS).next_delay(0.0, 0) == 4.0
    assert PollSchedule(1.2, WITH_PROGRESS).next_delay(0.0, 0) == WITH_PROGRESS.visible_after
    assert PollSchedule(60.0, WITH_PROGRESS).next_delay(0.0, 0) == FIRST_POLL_CAP
    # A task expected to end before it could be seen is asked just after its end: it exists by then.
    assert PollSchedule(0.5, WITH_PROGRESS).next_delay(0.0, 0) == pytest.approx(0.5 + AIM_MARGIN)


def test_without_progress_or_history_the_providers_typical_duration_is_the_prior() -> None:
    assert PollSchedule(None, WITHOUT_PROGRESS).next_delay(0.0, 0) == FIRST_POLL_CAP
    assert PollSchedule(None, WITHOUT_PROGRESS).next_delay(5.0, 1) == pytest.approx(11.0 + AIM_MARGIN)


def test_with_nothing_to_predict_the_finish_it_polls_once_a_second() -> None:
    # A progress-reporting provider whose first answer carried none ("Task not found" still).
    assert PollSchedule(None, WITH_PROGRESS).next_delay(1.0, 1) == SPARSE_INTERVAL


@pytest.mark.parametrize("duration", [1.5, 2.0, 8.0, 25.0])
@pytest.mark.parametrize("progress_known", [True, False])
def test_a_task_on_schedule_takes_two_polls_and_is_seen_within_the_margin(duration, progress_known):
    timing = WITH_PROGRESS if progress_known else WITHOUT_PROGRESS
    polls, late = simulate(PollSchedule(duration, timing), duration, progress_known)
    assert polls <= 2
    assert late <= AIM_MARGIN + 1e-9


@pytest.mark.parametrize("duration", [1.5, 2.0, 8.0, 25.0])
def test_the_first_task_after_a_start_takes_two_polls_when_progress_is_reported(duration):
    polls, late = simulate(PollSchedule(None, WITH_PROGRESS), duration, progress_known=True)
    assert polls == 2 and late <= AIM_MARGIN + 1e-9


def test_progress_beats_a_stale_expectation() -> None:
    # History says 10 s, but the task reported 50% after 10 s: it will take 20 s.
    assert PollSchedule(10.0, WITH_PROGRESS).next_delay(10.0, 1, predicted_total(10.0, 0.5)) == pytest.approx(
        10.0 + AIM_MARGIN)


def test_the_margin_past_a_progress_prediction_narrows_while_tasks_are_found_there_and_widens_when_not() -> None:
    margin = None
    for _ in range(12):
        margin = PollSchedule(10.0, WITH_PROGRESS, learnt_margin=margin).margin_after(found_finished=True)
    assert margin == MIN_AIM_MARGIN
    learnt = PollSchedule(10.0, WITH_PROGRESS, learnt_margin=margin)
    assert learnt.next_delay(10.0, 1, predicted_total(10.0, 0.5)) == pytest.approx(10.0 + MIN_AIM_MARGIN)
    assert learnt.next_delay(5.0, 1) == pytest.approx(5.0 + AIM_MARGIN), "a history-based aim keeps its margin"
    assert learnt.margin_after(found_finished=False) == 2 * MIN_AIM_MARGIN
    widest = PollSchedule(10.0, WITH_PROGRESS, learnt_margin=MAX_AIM_MARGIN)
    assert widest.margin_after(found_finished=False) == MAX_AIM_MARGIN


def test_a_reading_at_low_progress_is_placed_between_the_polls_sending_and_its_answer() -> None:
    # A poll sent 1.00 s in and answered 1.04 s in read 1/8: the reading, and the prediction it
    # makes, are placed at the midpoint, not 8 x 0.02 s early (a poll too soon) or late.
    assert aimed_finish(1.0, 1.04, 0.125) == pytest.approx(1.02 / 0.125)
    assert aimed_finish(1.0, 1.04, None) is None


def test_an_overdue_task_is_polled_densely_then_backs_off() -> None:
    schedule = PollSchedule(10.0, WITHOUT_PROGRESS)
    assert schedule.next_delay(10.1, 2) == pytest.approx(DENSE_INTERVAL + 0.025)
    assert schedule.next_delay(30.0, 5) == SPARSE_INTERVAL


def test_the_finish_is_placed_inside_the_interval_between_not_ready_and_ready() -> None:
    # Progress 0.5 at 1.0 s predicts 2.0 s, whenever the ready answer was seen.
    assert finish_estimate(1.0, 0.5, 2.3, expected=None) == pytest.approx(2.0)
    assert finish_estimate(1.0, 0.5, 1.8, expected=None) == pytest.approx(1.8)  # never after it was seen ready
    # A narrow interval (dense polls of a late task): its midpoint.
    assert finish_estimate(2.05, None, 2.3, expected=2.0) == pytest.approx(2.175)
    # Seen ready at the poll aimed after the expected finish, no progress: a small step below it,
    # never the poll's own moment (which would add the pickup delay to the history).
    assert finish_estimate(1.0, None, 2.05, expected=2.0) == pytest.approx(2.0 * (1 - PROBE_DOWN))


def test_history_is_a_running_average_per_provider() -> None:
    history = DurationHistory()
    assert history.expected("bfl") is None
    history.record("bfl", 10.0)
    history.record("bfl", 20.0)
    assert history.expected("bfl") == pytest.approx(13.0)
    assert history.expected("fal") is None


@pytest.fixture
def bfl(bfl: BflProvider) -> BflProvider:
    """The provider on BFL's own documented timing, against a stand-in that lags as BFL does."""
    bfl.poll_timing = BFL_TIMING
    return bfl


def test_the_history_learns_the_tasks_own_duration_not_the_upload(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    # The provider's clock starts when it accepts the task; a slow upload must not make the next
    # task's expected finish (or a progress-based estimate) later than the provider's.
    fake_bfl.submit_delay = 0.3 * PACE
    fake_bfl.plans.append(TaskPlan(latency=LATENCY, visible_after=LAG))
    generate(prepare(REQUEST, bfl), bfl)
    assert DURATIONS.expected("bfl") == pytest.approx(LATENCY, abs=CLOSE)


def polls_per_task(fake: FakeBfl) -> Counter:
    """Every poll the stand-in answered, "Task not found" ones included, by task."""
    return Counter(request.query.get("id") for request in fake.cluster.requests)


def run_waves(fake: FakeBfl, provider: BflProvider, waves: int, per_wave: int, plan: TaskPlan) -> list[float]:
    """`waves` batches of tasks one after another; the history's estimate after each wave."""
    estimates = []
    for wave in range(waves):
        fake.plans.extend(plan for _ in range(per_wave))
        requests = seeded_requests(REQUEST.with_seed(1000 * wave), per_wave)
        generate_batch([prepare(request, provider) for request in requests], provider)
        estimates.append(DURATIONS.expected(provider.name))
    return estimates


def test_the_first_task_after_a_start_is_polled_twice_and_teaches_the_true_duration(fake_bfl: FakeBfl,
                                                                                    bfl: BflProvider) -> None:
    # BFL answers "Task not found" just after the submit: the first poll waits past that.
    fake_bfl.plans.append(TaskPlan(latency=LATENCY, visible_after=LAG))
    generate(prepare(REQUEST, bfl), bfl)
    assert list(polls_per_task(fake_bfl).values()) == [2]
    assert DURATIONS.expected("bfl") == pytest.approx(LATENCY, abs=CLOSE)


def test_a_hundred_tasks_take_two_polls_each_and_the_estimate_does_not_drift(fake_bfl: FakeBfl,
                                                                           bfl: BflProvider) -> None:
    estimates = run_waves(fake_bfl, bfl, waves=10, per_wave=10, plan=TaskPlan(latency=LATENCY, visible_after=LAG))
    assert max(polls_per_task(fake_bfl).values()) <= 2
    assert len(fake_bfl.tasks) == 100
    assert DURATIONS.aim_margin("bfl") == MIN_AIM_MARGIN, "the stand-in's progress is exact: it earns the least margin"
    assert all(abs(estimate - LATENCY) <= CLOSE for estimate in estimates), estimates


def test_without_progress_the_estimate_stays_near_the_true_duration(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    # A provider that reports no progress, whose typical duration is right: the estimate probes
    # downwards and is set right by the occasional late task, never growing by the pickup delay.
    bfl.poll_timing = replace(BFL_TIMING, typical_seconds=LATENCY, reports_progress=False)
    estimates = run_waves(fake_bfl, bfl, waves=6, per_wave=10,
                          plan=TaskPlan(latency=LATENCY, visible_after=LAG, report_progress=False))
    polls = polls_per_task(fake_bfl)
    assert sum(polls.values()) / len(polls) <= 2.5
    assert all(abs(estimate - LATENCY) <= 2 * DENSE_INTERVAL * PACE for estimate in estimates), estimates


def test_a_task_not_found_window_past_the_first_poll_costs_no_third_poll(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    # BFL's "Task not found" after a submit may outlast the first poll (its guide retries it for
    # the first few seconds): that answer is a "not ready then" reading, so the first task teaches
    # a duration no shorter than the truth, and later tasks skip a halfway poll that would meet it.
    # 2 s tasks hidden for 1.5 s (at half speed): the first poll (after 1 s) meets the window, a second
    # poll after 2 s finds the task ready, and a 1 s estimate (the midpoint) would cost a third.
    hidden = TaskPlan(latency=2.0 * PACE, visible_after=1.5 * PACE)
    run_waves(fake_bfl, bfl, waves=2, per_wave=8, plan=hidden)
    polls = polls_per_task(fake_bfl)
    assert len(polls) == 16 and max(polls.values()) <= 2, polls
    hidden_answers = sum(polls[task_id] - task.polls for task_id, task in fake_bfl.tasks.items())
    assert hidden_answers >= 8, "every first task's first poll met the window"
    assert DURATIONS.hidden_until("bfl") >= BFL_TIMING.visible_after
