"""When to poll next: soon after submit, sparse mid-task, dense when the image is due.

A fixed interval forces a choice between slow pickup (a 2 s interval wastes 1 s per image on
average) and many polls. Instead the schedule estimates when the task will finish, from the
provider's progress field when it sends one, else from how long recent tasks on this provider
took, polls once just after that moment, and densely only if the image is late.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

FIRST_POLL_DELAY = 0.25  # catches early refusals (moderation) and gives the first progress reading
DENSE_INTERVAL = 0.25  # the pickup delay we accept once an image is overdue
SPARSE_INTERVAL = 1.0  # used when nothing predicts the finish, and after an overrun
MAX_INTERVAL = 3.0
AIM_WINDOW = 2.0  # within this many seconds of the expected finish, poll once, right after it
AIM_MARGIN = 0.05
_HISTORY_WEIGHT = 0.3  # weight of the newest duration in the running average


@dataclass(frozen=True)
class PollSchedule:
    """Delays between polls for one task, given an expected duration in seconds (or None)."""

    expected_seconds: float | None = None

    def next_delay(self, elapsed: float, progress: float | None, polls_so_far: int) -> float:
        if polls_so_far == 0:
            return FIRST_POLL_DELAY
        remaining = self._remaining(elapsed, progress)
        if remaining is None:
            return SPARSE_INTERVAL
        if remaining < 0:  # overdue: back off gradually to the sparse interval
            return min(SPARSE_INTERVAL, DENSE_INTERVAL + 0.25 * -remaining)
        if remaining <= AIM_WINDOW:  # close enough to trust the estimate: poll just after it
            return remaining + AIM_MARGIN
        return min(MAX_INTERVAL, remaining / 2)

    def _remaining(self, elapsed: float, progress: float | None) -> float | None:
        if progress is not None and 0.05 <= progress < 1.0 and elapsed > 0:
            return elapsed / progress - elapsed
        if self.expected_seconds is not None:
            return self.expected_seconds - elapsed
        return None


class DurationHistory:
    """A running average of task durations per provider, shared by all tasks in the process."""

    def __init__(self) -> None:
        self._averages: dict[str, float] = {}
        self._lock = threading.Lock()

    def expected(self, provider: str) -> float | None:
        with self._lock:
            return self._averages.get(provider)

    def clear(self) -> None:
        """Forget all history (a fresh start, as after a restart)."""
        with self._lock:
            self._averages.clear()

    def record(self, provider: str, seconds: float) -> None:
        with self._lock:
            previous = self._averages.get(provider)
            self._averages[provider] = (
                seconds if previous is None else (1 - _HISTORY_WEIGHT) * previous + _HISTORY_WEIGHT * seconds
            )


DURATIONS = DurationHistory()
