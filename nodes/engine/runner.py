"""One generation, start to finish: validate, price, submit once, poll, fetch, decode.

This is where "never pay twice" lives. A submit is retried only when the provider cannot have
created a task (connection refused, 429 "too many active tasks", 503). Once a task id exists,
every failure is handled by polling that task again, never by submitting a new one; when the
user cancels, the paid task is named in the message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from . import errors
from .images import decode_image, downscale_to_max_pixels
from .polling import DURATIONS, PollSchedule
from .pricing import CostEstimate, estimate
from .errors import TransientError
from .providers.base import PollUpdate, Provider, SubmittedTask
from .request import FlexRequest, InputImage

ProgressCallback = Callable[[float | None, str], None]
CancelCheck = Callable[[], bool]
_WAIT_SLICE = 0.05  # cancellation is noticed within this many seconds while waiting


@dataclass(frozen=True)
class RunSettings:
    """How long to wait for each phase; all in seconds."""

    submit_retry_seconds: float = 120.0  # 429/503 on submit: wait for a free slot this long
    task_timeout_seconds: float = 600.0  # from submit to a finished image
    connect_retries: int = 2


@dataclass(frozen=True)
class RunHooks:
    """Callbacks from a caller (a node's progress bar, ComfyUI's interrupt flag, the CLI)."""

    on_progress: ProgressCallback | None = None
    is_cancelled: CancelCheck | None = None
    on_submitted: Callable[[SubmittedTask], None] | None = None

    def progress(self, fraction: float | None, status: str) -> None:
        if self.on_progress is not None:
            self.on_progress(fraction, status)

    def cancelled(self) -> bool:
        return bool(self.is_cancelled and self.is_cancelled())


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request, inputs shrunk to the provider's caps, its price, and what changed."""

    request: FlexRequest
    estimate: CostEstimate
    notes: tuple[str, ...]


@dataclass(frozen=True)
class GenerationResult:
    """One finished image with what the provider reported beside our estimate."""

    pixels: np.ndarray
    provider: str
    task_id: str
    seed: int | None
    estimate: CostEstimate
    reported_cost: float | None
    input_mp: float | None
    output_mp: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)
    seconds: float = 0.0
    from_cache: bool = False

    def report(self) -> str:
        """A short, human summary: what it cost, how large, which task."""
        cost = self.estimate.summary()
        if self.from_cache:
            cost = f"from the result cache: no request, no cost (first run: {cost})"
        elif self.reported_cost is not None:
            cost += f"; {self.provider} reported {self.reported_cost:g} credits"
        lines = [
            f"{self.provider} task {self.task_id}, seed {self.seed if self.seed is not None else 'random'}",
            cost,
        ]
        if self.output_mp is not None:
            lines.append(f"megapixels: {self.input_mp or 0:g} in, {self.output_mp:g} out")
        lines.extend(self.notes)
        return "\n".join(lines)


def prepare(request: FlexRequest, provider: Provider, *, count: int = 1) -> PreparedRequest:
    """Validate against the provider, downscale oversized inputs (saying so) and price it."""
    notes: list[str] = []
    shrunk: list[InputImage] = []
    for index, image in enumerate(request.images, start=1):
        result = downscale_to_max_pixels(image.pixels, provider.limits.max_input_pixels, label=f"input image {index}")
        shrunk.append(InputImage(result.pixels) if result.note else image)
        if result.note:
            notes.append(result.note)
    prepared = replace(request, images=tuple(shrunk))
    provider.validate(prepared)
    notes.extend(provider.notes_for(prepared))
    return PreparedRequest(prepared, estimate(prepared, provider.name, count=count), tuple(notes))


def generate(
    prepared: PreparedRequest,
    provider: Provider,
    *,
    hooks: RunHooks = RunHooks(),
    settings: RunSettings = RunSettings(),
) -> GenerationResult:
    """Run one prepared request on a provider and return the decoded image."""
    started = time.monotonic()
    hooks.progress(0.0, "submitting")
    try:
        task = _submit_once(prepared.request, provider, hooks, settings)
    except errors.FluxFlexError as error:
        error.provider = error.provider or provider.name
        raise
    if hooks.on_submitted is not None:
        hooks.on_submitted(task)
    try:
        update = _poll_until_done(task, provider, hooks, settings, started)
        hooks.progress(1.0, "downloading")
        pixels = decode_image(provider.fetch(task, update))
    except errors.FluxFlexError as error:
        raise _about_task(error, task) from None
    elapsed = time.monotonic() - started
    return GenerationResult(
        pixels=pixels,
        provider=provider.name,
        task_id=task.task_id,
        seed=update.seed if update.seed is not None else prepared.request.seed,
        estimate=prepared.estimate,
        reported_cost=update.reported_cost if update.reported_cost is not None else task.reported_cost,
        input_mp=task.input_mp,
        output_mp=task.output_mp,
        notes=prepared.notes,
        seconds=elapsed,
    )


def _about_task(error: errors.FluxFlexError, task: SubmittedTask) -> errors.FluxFlexError:
    """Every error after a submit names the task that exists (and may be billed), whoever raised it."""
    error.provider = error.provider or task.provider
    error.task_id = error.task_id or task.task_id
    error.billed = error.billed or errors.MAYBE_BILLED
    return error


def _submit_once(request: FlexRequest, provider: Provider, hooks: RunHooks, settings: RunSettings) -> SubmittedTask:
    """Submit, retrying only refusals that guarantee nothing was created."""
    deadline = time.monotonic() + settings.submit_retry_seconds
    connect_failures = 0
    delay = 1.0
    while True:
        _raise_if_cancelled(hooks, None)
        try:
            return provider.submit(request)
        except TransientError as refusal:
            connect_failures += refusal.unreachable
            if refusal.unreachable and connect_failures > settings.connect_retries:
                raise errors.ProviderUnavailableError(
                    f"Could not reach {provider.label} at {provider.base_url}: {refusal.reason}. Nothing was sent "
                    "or billed. Check the network, or the base URL if you set one.",
                    provider=provider.name, billed=errors.NOT_BILLED,
                ) from None
            if time.monotonic() + delay > deadline:
                raise errors.RateLimitedError(
                    f"{provider.label} did not accept the request: {refusal.reason}. Nothing was created or "
                    "billed. Wait for running tasks to finish, then run again.",
                    provider=provider.name, status=refusal.status, billed=errors.NOT_BILLED,
                ) from None
            hooks.progress(0.0, f"waiting: {refusal.reason}")
            _wait(refusal.retry_after or delay, hooks, None)
            delay = min(delay * 2, 10.0)


def _poll_until_done(
    task: SubmittedTask, provider: Provider, hooks: RunHooks, settings: RunSettings, started: float
) -> PollUpdate:
    """Poll on the task's own clock: it starts when the provider accepted it, so the upload before
    and the download after neither skew progress-based estimates nor enter the duration history."""
    schedule = PollSchedule(DURATIONS.expected(provider.name))
    deadline = started + settings.task_timeout_seconds
    accepted = time.monotonic()
    polls = 0
    progress: float | None = None
    while True:
        _wait(schedule.next_delay(time.monotonic() - accepted, progress, polls), hooks, task)
        try:
            update = provider.poll(task, polls_so_far=polls)
        except TransientError as hiccup:
            update = PollUpdate(done=False, status=f"retrying ({hiccup.reason})", progress=progress)
        polls += 1
        if update.done:
            DURATIONS.record(provider.name, time.monotonic() - accepted)
            return update
        progress = update.progress if update.progress is not None else progress
        hooks.progress(progress, update.status)
        if time.monotonic() > deadline:
            raise errors.GenerationTimeoutError(
                f"{provider.label} task {task.task_id} did not finish within {settings.task_timeout_seconds:g} s "
                f"(last status: {update.status}). It was not resubmitted; it may still finish on the provider's side.",
                provider=task.provider, task_id=task.task_id, billed=errors.BILLED,
            )


def _wait(seconds: float, hooks: RunHooks, task: SubmittedTask | None) -> None:
    """Sleep in short slices so a cancel is noticed quickly."""
    end = time.monotonic() + seconds
    while True:
        _raise_if_cancelled(hooks, task)
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(_WAIT_SLICE, left))


def _raise_if_cancelled(hooks: RunHooks, task: SubmittedTask | None) -> None:
    if not hooks.cancelled():
        return
    if task is None:
        raise errors.CancelledError("Cancelled before the request was sent; nothing was billed.",
                                    billed=errors.NOT_BILLED)
    cost = f" ({task.reported_cost:g} credits)" if task.reported_cost is not None else ""
    raise errors.CancelledError(
        f"Cancelled. {task.provider} task {task.task_id} had already been submitted{cost} and is billed; "
        "it was not resubmitted.",
        provider=task.provider, task_id=task.task_id, billed=errors.BILLED,
    )
