"""What a provider documents about its tasks' timing: data every provider class declares.

Apart from the schedule that reads it (polling.py): loading a provider (for a price, a dry run or
a result-cache hit) loads this, and only a run that polls loads the schedule.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PollTiming:
    """What a provider documents about its tasks' timing, for the schedule.

    `visible_after`: seconds after the submit before a poll can find the task (BFL answers "Task
    not found" just after a submit while the task reaches the cluster that answers polls).
    `typical_seconds`: how long a task usually takes, the first task's prior when the provider
    reports no progress. `reports_progress`: whether a pending answer carries a progress fraction.
    """

    # BFL documents "Task not found" as an unknown or expired task
    # (https://help.bfl.ai/articles/2916279050-why-did-my-request-fail), yet answers it for a moment
    # after a submit; a poll 0.25 s after the submit was measured to meet it. One second is past it.
    visible_after: float = 1.0
    # FLUX.2 [flex]'s median generation time over 30 days of requests was 15.8 s on fal and 16.1 s
    # on Replicate (https://lumenfall.ai/models/black-forest-labs/flux.2-flex); Replicate's own
    # example prediction took 22.6 s (https://replicate.com/black-forest-labs/flux-2-flex).
    typical_seconds: float = 16.0
    reports_progress: bool = False
    # The client's own intervals (DENSE_INTERVAL to AIM_MARGIN, and the runner's backoff before a
    # resubmit of a refused request) are multiplied by this. 1 against a real provider; a stand-in
    # whose tasks run at a fraction of real time (the tests') sets that fraction, so the schedule
    # keeps its shape and the tests keep every check without waiting on a real provider's clock.
    pace: float = 1.0
