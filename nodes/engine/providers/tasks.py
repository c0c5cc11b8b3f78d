"""What a provider hands the runner: the task it accepted and each poll's answer.

Apart from the Provider interface (base.py) because only a run that submits or polls makes them:
a price, a dry run or a cache hit loads a provider and never defines these classes (each frozen
dataclass costs every command's start a fraction of a millisecond).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class SubmittedTask:
    """A task the provider accepted (and may bill for): poll it, never submit it again."""

    provider: str
    task_id: str
    poll_url: str
    reported_cost: float | None = None
    input_mp: float | None = None
    output_mp: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PollUpdate:
    """One poll's answer: still running (with progress if known) or ready with a result URL."""

    done: bool
    status: str
    progress: float | None = None
    result_url: str | None = None
    seed: int | None = None
    reported_cost: float | None = None  # for providers that state the cost only when the task ends (Apiframe)
