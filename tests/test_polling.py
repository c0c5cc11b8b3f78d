"""When the client polls: soon after submit, rarely mid-task, right after the expected finish."""

from __future__ import annotations

import pytest
from comfyui_flux2_flex.nodes.engine.polling import (
    AIM_MARGIN,
    DENSE_INTERVAL,
    DURATIONS,
    FIRST_POLL_DELAY,
    MAX_INTERVAL,
    SPARSE_INTERVAL,
    DurationHistory,
    PollSchedule,
)
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider
from comfyui_flux2_flex.nodes.engine.request import FlexRequest
from comfyui_flux2_flex.nodes.engine.runner import generate, prepare
from fakes.bfl_server import FakeBfl


def polls_for(schedule: PollSchedule, duration: float, progress_known: bool) -> tuple[int, float]:
    """Simulate one task: how many polls until it is seen finished, and how late it is seen."""
    elapsed, polls = 0.0, 0
    while True:
        progress = min(elapsed / duration, 1.0) if progress_known and elapsed else None
        elapsed += schedule.next_delay(elapsed, progress, polls)
        polls += 1
        if elapsed >= duration:
            return polls, elapsed - duration


def test_the_first_poll_comes_soon_after_submit() -> None:
    assert PollSchedule(30.0).next_delay(0.0, None, 0) == FIRST_POLL_DELAY


def test_without_any_estimate_it_polls_once_a_second() -> None:
    assert PollSchedule(None).next_delay(5.0, None, 3) == SPARSE_INTERVAL


@pytest.mark.parametrize("duration", [2.0, 8.0, 25.0, 60.0])
@pytest.mark.parametrize("progress_known", [True, False])
def test_a_task_on_schedule_is_seen_within_a_tenth_of_a_second_at_under_one_poll_a_second(duration, progress_known):
    polls, late = polls_for(PollSchedule(duration), duration, progress_known)
    assert late <= AIM_MARGIN + 1e-9
    assert polls / duration <= 1.0


def test_progress_beats_a_stale_expectation() -> None:
    # history says 10 s, but the task reports 50% after 10 s: it will take 20 s.
    assert PollSchedule(10.0).next_delay(10.0, 0.5, 4) == MAX_INTERVAL


def test_an_overdue_task_is_polled_densely_then_backs_off() -> None:
    schedule = PollSchedule(10.0)
    assert schedule.next_delay(10.1, None, 5) == pytest.approx(DENSE_INTERVAL + 0.025)
    assert schedule.next_delay(30.0, None, 9) == SPARSE_INTERVAL


def test_history_is_a_running_average_per_provider() -> None:
    history = DurationHistory()
    assert history.expected("bfl") is None
    history.record("bfl", 10.0)
    history.record("bfl", 20.0)
    assert history.expected("bfl") == pytest.approx(13.0)
    assert history.expected("fal") is None


def test_the_history_learns_the_tasks_own_duration_not_the_upload(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    # The provider's clock starts when it accepts the task; a slow upload must not make the next
    # task's expected finish (or a progress-based estimate) later than the provider's.
    fake_bfl.submit_delay = 0.3
    result = generate(prepare(FlexRequest(prompt="a kite", width=128, height=128, seed=1), bfl), bfl)
    assert DURATIONS.expected("bfl") <= result.seconds - fake_bfl.submit_delay
