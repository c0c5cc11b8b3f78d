"""When to poll: once mid-task to read the progress, once just after the expected finish.

A fixed interval forces a choice between slow pickup (a 2 s interval wastes 1 s per image on
average) and many polls. Instead the schedule predicts when the task will finish, from the
provider's progress field when it sends one, else from how long recent tasks on this provider
took, and polls twice for a task that finishes on time: a first poll as soon as the provider can
answer about the task (BFL answers "Task not found" just after a submit; a poll then is wasted),
or halfway to the expected finish, which catches early refusals and reads the progress; then one
just after the predicted finish. Only a late task is polled densely.

How far after a progress-based prediction that poll comes is learnt per provider: a task seen
finished there narrows the margin for the next (down to what a loaded machine's timing errs by), a
task not yet finished widens it. A provider whose progress predicts its finish closely is picked
up within tens of milliseconds; one whose progress runs ahead of it costs an extra poll or two,
until the margin covers it.

The history records when each task really finished, not when the client noticed: a poll sees
"not ready" at one moment and "ready" at a later one, and the finish lies between. Recording the
moment it was seen would add the pickup delay to every estimate, so the next poll would come later
and the estimate would grow task after task. `finish_estimate` places the finish inside that
interval from the progress, or from a short interval's midpoint, so the history stays put.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .poll_timing import PollTiming

DENSE_INTERVAL = 0.25  # the pickup delay we accept once an image is overdue
SPARSE_INTERVAL = 1.0  # used when nothing predicts the finish, and after an overrun
MAX_INTERVAL = 30.0  # a very long task is still asked about this often (its progress refreshes the estimate)
FIRST_POLL_CAP = 5.0  # a first poll of a long task comes no later than this: early refusals show early
AIM_MARGIN = 0.1  # poll this long after the predicted finish, until a progress-based margin is learnt
MIN_AIM_MARGIN = 0.02  # seconds at any pace: what a loaded machine's scheduling and a round trip may err by
MAX_AIM_MARGIN = 1.0  # a provider whose progress misleads is still aimed at no later than this past it
AIM_NARROWING = 0.7  # a task seen finished at the aimed poll: the next margin is this fraction of it
AIM_WIDENING = 2.0  # one not yet finished: the next margin is this multiple
MIN_PROGRESS = 0.01  # a smaller progress reading (or none: 0) predicts too coarsely to aim at
NARROW_INTERVAL = 2 * DENSE_INTERVAL  # "not ready" and "ready" this close: the midpoint is the finish
PROBE_DOWN = 0.03  # without progress, a task seen ready on time is recorded this fraction earlier (see below)
_HISTORY_WEIGHT = 0.3  # weight of the newest duration in the running average


@dataclass(frozen=True)
class PollSchedule:
    """Delays between polls for one task, given the history's expected duration (or None)."""

    expected_seconds: float | None = None
    timing: PollTiming = PollTiming()
    hidden_until: float | None = None  # recent tasks still answered "Task not found" this long after their submit
    learnt_margin: float | None = None  # seconds past a progress-based prediction that recent tasks were found in

    def next_delay(self, elapsed: float, polls_so_far: int, predicted: float | None = None) -> float:
        """Seconds to wait before the next poll, `elapsed` seconds after the submit; `predicted` is
        the duration the latest progress reading predicts (`predicted_total`), if any."""
        if polls_so_far == 0:
            return self._first_delay()
        total = predicted if predicted is not None else self.expectation()
        pace = self.timing.pace
        if total is None:
            return pace * SPARSE_INTERVAL
        remaining = total - elapsed
        if remaining < 0:  # overdue: back off gradually to the sparse interval
            return pace * min(SPARSE_INTERVAL, DENSE_INTERVAL + 0.25 * -remaining / pace)
        margin = self.progress_margin if predicted is not None else pace * AIM_MARGIN
        return min(pace * MAX_INTERVAL, remaining + margin)

    @property
    def progress_margin(self) -> float:
        """Seconds past a progress-based prediction to poll at: the learnt margin, or the first one."""
        return self.learnt_margin if self.learnt_margin is not None else self.timing.pace * AIM_MARGIN

    def margin_after(self, found_finished: bool) -> float:
        """The margin for the next task, once a poll aimed this margin past a prediction found the
        task finished, or not yet."""
        if found_finished:
            return max(MIN_AIM_MARGIN, self.progress_margin * AIM_NARROWING)
        return min(self.timing.pace * MAX_AIM_MARGIN, self.progress_margin * AIM_WIDENING)

    def _first_delay(self) -> float:
        """As soon as the task can be seen; halfway to an expected finish; or just after an expected
        finish that comes before the task can be seen (it has ended by then, so it is there).
        Halfway is skipped when recent tasks were still hidden then ("Task not found" lasting
        longer than `visible_after`): that poll would learn nothing and a third one would follow."""
        expected, pace = self.expectation(), self.timing.pace
        if expected is None:
            return self.timing.visible_after
        after_finish = expected + pace * AIM_MARGIN
        halfway = max(self.timing.visible_after, min(expected / 2, pace * FIRST_POLL_CAP))
        if self.hidden_until is not None and halfway <= self.hidden_until:
            return after_finish
        return min(after_finish, halfway)

    @property
    def narrow_interval(self) -> float:
        """Polls "not ready" and "ready" at most this far apart place the finish at their midpoint."""
        return self.timing.pace * NARROW_INTERVAL

    def expectation(self) -> float | None:
        """The history's duration; without one, the provider's typical duration when no progress
        reading will come to predict the finish (with progress the first poll reads it instead)."""
        if self.expected_seconds is not None:
            return self.expected_seconds
        return None if self.timing.reports_progress else self.timing.typical_seconds


def predicted_total(elapsed: float, progress: float | None) -> float | None:
    """The task's whole duration as a progress reading taken `elapsed` seconds in predicts it."""
    if progress is None or not MIN_PROGRESS <= progress < 1.0 or elapsed <= 0:
        return None
    return elapsed / progress


def aimed_finish(asked: float, answered: float, progress: float | None) -> float | None:
    """The finish to aim the next poll at, from a progress reading whose poll was sent `asked` and
    answered `answered` seconds after the submit. The reading was taken in between, and a
    prediction multiplies the error in that moment by one over the progress (eight times at an
    eighth of the task): from the sending it comes early by up to that many round trips (a poll
    too soon, then dense ones), from the arrival as late. The midpoint errs least either way; the
    learnt margin covers the rest."""
    return predicted_total((asked + answered) / 2, progress)


def finish_estimate(pending_at: float, pending_progress: float | None, ready_at: float,
                    expected: float | None, narrow_interval: float = NARROW_INTERVAL) -> float:
    """When a task most likely finished, in seconds after its submit, seen not ready at
    `pending_at` (0 when no poll answered before) and ready at `ready_at`.

    - With a progress reading at `pending_at`: the finish it predicts, kept inside the interval.
    - No expectation yet (the first task after a start, whose first poll met "Task not found" or
      found it ready): the moment it was seen ready. Too late an estimate costs the next task
      some pickup delay, which the next rule takes back; too early a one costs it a poll.
    - A narrow interval (a late task polled densely): its midpoint.
    - A wide one (seen ready at the poll aimed just after the expected finish, no progress): the
      task was not later than expected, but how much earlier is unknown. Recording the poll's own
      moment would add the pickup delay each time (an estimate that only grows); recording the
      expectation less a small step instead probes downwards, until one task is late and its
      narrow interval sets the estimate right again: it stays within a few percent of the truth.
      (A task already seen ready at a poll halfway to the expectation is recorded at that poll,
      so a much faster provider is learnt in a few tasks.)
    """
    guess = predicted_total(pending_at, pending_progress)
    if guess is None and expected is None:
        guess = ready_at
    elif guess is None:
        narrow = ready_at - pending_at <= narrow_interval
        guess = (pending_at + ready_at) / 2 if narrow else expected * (1 - PROBE_DOWN)
    return min(ready_at, max(pending_at, guess))


class DurationHistory:
    """A running average of task durations per provider, shared by all tasks in the process, how
    long after a submit its tasks were still seen hidden ("Task not found"), and the margin past a
    progress-based prediction its tasks were found finished in (PollSchedule.margin_after)."""

    def __init__(self) -> None:
        self._averages: dict[str, float] = {}
        self._hidden: dict[str, float] = {}
        self._margins: dict[str, float] = {}
        self._lock = threading.Lock()

    def aim_margin(self, provider: str) -> float | None:
        with self._lock:
            return self._margins.get(provider)

    def record_aim_margin(self, provider: str, seconds: float) -> None:
        with self._lock:
            self._margins[provider] = seconds

    def hidden_until(self, provider: str) -> float | None:
        with self._lock:
            return self._hidden.get(provider)

    def record_hidden(self, provider: str, seconds: float) -> None:
        """A poll `seconds` after a submit met "Task not found": the window lasts at least that long."""
        with self._lock:
            self._hidden[provider] = max(seconds, self._hidden.get(provider, 0.0))

    def expected(self, provider: str) -> float | None:
        with self._lock:
            return self._averages.get(provider)

    def clear(self) -> None:
        """Forget all history (a fresh start, as after a restart)."""
        with self._lock:
            self._averages.clear()
            self._hidden.clear()
            self._margins.clear()

    def record(self, provider: str, seconds: float) -> None:
        with self._lock:
            previous = self._averages.get(provider)
            self._averages[provider] = (
                seconds if previous is None else (1 - _HISTORY_WEIGHT) * previous + _HISTORY_WEIGHT * seconds
            )


DURATIONS = DurationHistory()
