"""One generation, start to finish: validate, price, submit once, poll, fetch, decode.

This is where "never pay twice" lives. A submit is retried only when the provider cannot have
created a task: the connection was refused, or a 429 "too many active tasks" (honouring its
Retry-After, within a bounded wait). A 5xx or a broken connection after sending may have created
a task, so it is reported, not resent. Once a task id exists it is written to the journal before
the first poll, and every failure is handled by polling that task again, never by submitting a
new one: an expired, truncated or unreadable download is fetched again from the task. Every
error after the submit names the task, what was paid and how to recover the image. A task is
declared lost only when the provider says it is gone, never because its download link failed.

Before a submit the run takes one of the key's active-task slots, shared with the other processes
on this machine (slots.py), and gives it back once the task has finished: a 429 becomes rare.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import errors
from .errors import SubmitOutcomeUnknown, TransientError
from .images import decode_image
from .interruptible import call_interruptibly
from .journal import DELIVERED, EXPIRED, FAILED, JournalEntry, TaskJournal
from .polling import DURATIONS, PollSchedule, aimed_finish, finish_estimate
# What a run starts from and hands back lives in prepared.py, which a result-cache hit can load
# without this module's network, journal and image machinery; callers keep importing it from here.
from .prepared import GenerationResult, PreparedRequest, RunHooks, RunSettings, prepare  # noqa: F401
from .providers.base import Provider
from .providers.tasks import PollUpdate, SubmittedTask
from .request import FlexRequest
from .slots import Slot, task_slots
from .transport import DownloadStopped

_WAIT_SLICE = 0.05  # cancellation is noticed within this many seconds while waiting
PROMPT_SHOWN = 60  # characters of the prompt that name a task in a list (an ellipsis says it goes on)
FETCH_ATTEMPTS = 3  # an expired, truncated or unreadable result is fetched again from the task this often
SUBMIT_BACKOFF = (1.0, 10.0)  # a refused submit without Retry-After waits this long, doubling up to the second
POLL_AUTH_RETRIES = 3  # a 401/403 on a poll (a provider's hiccup, ComfyUI issue #11759) is polled past this often
# A submit refused as "overloaded" (OpenRouter's 529: nothing was made) is sent again at most this
# often, the waits doubling from RunSettings.overload_wait_seconds (a shorter Retry-After does not
# shorten them): a few spaced tries, not one a second for as long as the overload lasts.
OVERLOAD_RETRIES = 3
RECOVER_HOW = ("recover its image with `flux-flex recover {task_id}` or the FLUX.2 [flex] Recover paid task node, "
               "or run the same request again: it resumes the task instead of paying again")


def generate(
    prepared: PreparedRequest,
    provider: Provider,
    *,
    hooks: RunHooks = RunHooks(),
    settings: RunSettings = RunSettings(),
    journal: TaskJournal | None = None,
    resume: JournalEntry | None = None,
    owner: str = "",
    fingerprint: str = "",
) -> GenerationResult:
    """Run one prepared request on a provider and return the decoded image.

    With a journal, the accepted task is recorded before its first poll (under the run's lease,
    `owner`, and the request's `fingerprint`, which the caller computed before the submit: a
    reference read from a file afterwards could have changed) and marked when it ends. With
    `resume`, no submit is sent: that recorded task of the same request is polled instead.
    """
    started = time.monotonic()
    notes = prepared.notes
    slot = Slot(None)
    try:
        if resume is None:
            hooks.progress(0.0, "submitting")
            try:
                slot = _take_slot(provider, hooks)
                task = _submit_once(prepared.request, provider, hooks, settings)
            except SubmitOutcomeUnknown as unknown:
                raise _record_unknown(journal, provider, prepared, fingerprint, unknown) from None
            except errors.FluxFlexError as error:
                error.provider = error.provider or provider.name
                raise
            entry, journal_note = _record(journal, task, prepared, fingerprint, owner)
            notes += journal_note
        else:
            task, entry = resume.task(), resume
            hooks.progress(0.0, f"resuming paid task {task.task_id}")
            notes += (f"resumed {provider.label} task {task.task_id}, paid by an earlier run: nothing new was paid",)
        if hooks.on_submitted is not None:
            hooks.on_submitted(task)
        update, pixels = deliver(task, provider, hooks=hooks, settings=settings, journal=journal, entry=entry,
                                 price=prepared.estimate.summary(), just_submitted=resume is None,
                                 on_finished=slot.release)
    finally:
        slot.release()  # also when the run failed or was cancelled before its task finished
    return GenerationResult(
        image=pixels,
        provider=provider.name,
        task_id=task.task_id,
        seed=update.seed if update.seed is not None else prepared.request.seed,
        estimate=prepared.estimate,
        reported_cost=update.reported_cost if update.reported_cost is not None else task.reported_cost,
        input_mp=task.input_mp,
        output_mp=task.output_mp,
        notes=notes,
        seconds=time.monotonic() - started,
    )


def deliver(
    task: SubmittedTask,
    provider: Provider,
    *,
    hooks: RunHooks,
    settings: RunSettings,
    journal: TaskJournal | None,
    entry: JournalEntry | None,
    price: str,
    just_submitted: bool = False,
    on_finished: Callable[[], None] | None = None,
) -> tuple[PollUpdate, np.ndarray]:
    """Poll an accepted task to its end and download its image, fetching it again from the task
    when a download expires, breaks off or is not an image. Marks the journal entry; every error
    names the task, what was paid and how to recover it. A task `just_submitted` is polled on the
    schedule and teaches the duration history; an older one (resumed, recovered) is asked at once.
    `on_finished` is called once the provider reports the task ended, before the download."""
    try:
        update, pixels = _poll_and_fetch(task, provider, hooks, settings, just_submitted, on_finished)
    except errors.FluxFlexError as error:
        raise _paid_error(error, task, provider, journal, entry, price) from None
    if journal is not None and entry is not None:
        _mark(journal, entry, DELIVERED)
    return update, pixels


def _poll_and_fetch(task: SubmittedTask, provider: Provider, hooks: RunHooks, settings: RunSettings,
                    just_submitted: bool, on_finished: Callable[[], None] | None) -> tuple[PollUpdate, np.ndarray]:
    started = time.monotonic()
    polls = 0
    attempt = 1
    while True:
        update, polls = _poll_until_done(task, provider, hooks, settings, started, polls,
                                         on_schedule=just_submitted and polls == 0 and not provider.holds_answer(task))
        if on_finished is not None:
            on_finished()
        hooks.progress(1.0, "downloading")
        try:
            return update, decode_image(_download(task, provider, update, hooks, settings))
        except DownloadStopped:
            raise  # its deadline is spent (or the user stopped it): a new try would wait as long again
        except (errors.ResultExpiredError, errors.ImageDecodeError, errors.ProviderUnavailableError) as failure:
            if attempt == FETCH_ATTEMPTS or provider.holds_answer(task):  # an answer held is the same answer again
                raise
            attempt += 1
            hooks.progress(None, f"fetching the result again from task {task.task_id}: {failure}")


def _download(task: SubmittedTask, provider: Provider, update: PollUpdate, hooks: RunHooks,
              settings: RunSettings) -> bytes:
    deadline = time.monotonic() + settings.download_seconds

    def fetch(stop: threading.Event) -> bytes:
        return provider.fetch(task, update, deadline=deadline, stop=stop)

    return call_interruptibly(
        fetch, deadline=deadline, check_cancelled=lambda: raise_if_cancelled(hooks, task),
        on_deadline=lambda: DownloadStopped(
            f"The result download did not finish within {settings.download_seconds:g} s; it was stopped."),
    )


def _record(journal: TaskJournal | None, task: SubmittedTask, prepared: PreparedRequest, fingerprint: str,
            owner: str) -> tuple[JournalEntry | None, tuple[str, ...]]:
    """Journal the accepted task; a journal that cannot be written never stops the paid task."""
    if journal is None:
        return None, ()
    request = prepared.request
    try:
        entry = journal.record(task, fingerprint=fingerprint,
                               estimate=prepared.estimate, summary=describe_request(request), seed=request.seed,
                               owner=owner)
    except OSError as error:
        return None, (f"the journal of paid tasks could not be written ({error.strerror or error}): a crash now "
                      f"would lose task {task.task_id}",)
    return entry, ()


def _record_unknown(journal: TaskJournal | None, provider: Provider, prepared: PreparedRequest, fingerprint: str,
                    unknown: SubmitOutcomeUnknown) -> SubmitOutcomeUnknown:
    """Journal a submit that may have created a task, so a rerun asks before paying again."""
    unknown.provider, unknown.billed = provider.name, errors.MAYBE_BILLED
    unknown.args = (f"{unknown} If it was, it costs {prepared.estimate.summary()}.",)
    if journal is None:
        return unknown
    try:
        journal.record_unknown(provider.name, fingerprint=fingerprint,
                               estimate=prepared.estimate, summary=describe_request(prepared.request),
                               seed=prepared.request.seed, reason=str(unknown))
    except OSError:
        return unknown
    unknown.args = (str(unknown) + " Running the same request again will first say so once; the run after "
                    "that sends it.",)
    return unknown


def describe_request(request: FlexRequest) -> str:
    """Size, seed and the prompt's start: enough to recognise a task in a list."""
    width, height = request.output_size()
    start = request.prompt if len(request.prompt) <= PROMPT_SHOWN else request.prompt[:PROMPT_SHOWN].rstrip() + "…"
    return f"{width}x{height}, seed {request.seed if request.seed is not None else 'random'}: {start}"


def _mark(journal: TaskJournal, entry: JournalEntry, state: str) -> None:
    try:
        journal.mark(entry, state)
    except OSError:
        pass  # the image is delivered (or the error reported) either way; a stale record only lists it


def _paid_error(error: errors.FluxFlexError, task: SubmittedTask, provider: Provider, journal: TaskJournal | None,
                entry: JournalEntry | None, price: str) -> errors.FluxFlexError:
    """The same error, now naming the task, its price and how to get the image (or why not), and
    carrying them in its fields, whoever raised it."""
    error.provider = error.provider or provider.name
    error.task_id = error.task_id or task.task_id
    error.billed = error.billed or errors.MAYBE_BILLED
    named = task.task_id in str(error)
    if isinstance(error, (errors.GenerationFailedError, errors.ModeratedError)):
        state, advice = FAILED, "" if named else f" ({provider.label} task {task.task_id})"
    elif provider.holds_answer(task):
        state = EXPIRED
        advice = (f" {provider.label} answered request {task.task_id} with the image itself (estimate {price}); "
                  f"{provider.label} keeps no copy to fetch again, so it cannot be recovered. It was not resent: "
                  "running again pays for a new image.")
    elif isinstance(error, errors.ResultExpiredError) and not isinstance(error, errors.ResultLinkError):
        state = EXPIRED  # the provider's word; a failing link alone leaves the task recoverable
        advice = (f" {provider.label} task {task.task_id} was paid (estimate {price}); its result is no longer "
                  "available, so it cannot be recovered. It was not resubmitted: run again to pay for a new image.")
    else:
        state = None
        how = RECOVER_HOW.format(task_id=task.task_id) if journal is not None and entry is not None else (
            f"check your {provider.label} dashboard")
        advice = f" {provider.label} task {task.task_id} was paid (estimate {price}): {how}."
    if journal is not None and entry is not None and state is not None:
        _mark(journal, entry, state)
    error.args = (str(error) + advice,)
    return error


def _take_slot(provider: Provider, hooks: RunHooks) -> Slot:
    """One of the provider's active-task slots for this key, shared with other processes (slots.py)."""
    slots = task_slots(provider)
    return slots.take(cancelled=lambda: raise_if_cancelled(hooks, None),
                      on_wait=lambda: hooks.progress(0.0, f"waiting for one of the {slots.count} active-task slots "
                                                          f"of this {provider.label} key"))


def _submit_once(request: FlexRequest, provider: Provider, hooks: RunHooks, settings: RunSettings) -> SubmittedTask:
    """Submit, retrying only refusals that guarantee nothing was created."""
    deadline = time.monotonic() + settings.submit_retry_seconds
    connect_failures = overloads = 0
    delay, longest = (provider.poll_timing.pace * seconds for seconds in SUBMIT_BACKOFF)
    while True:
        raise_if_cancelled(hooks, None)
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
            wait = refusal.retry_after if refusal.retry_after is not None else delay
            if refusal.status not in (None, 429):  # overloaded: few tries, spaced however short its Retry-After
                overloads += 1
                if overloads > OVERLOAD_RETRIES:
                    raise errors.ProviderUnavailableError(
                        f"{provider.label} was still overloaded after {overloads} tries: {refusal.reason}. Nothing "
                        "was made or billed. Run again later.",
                        provider=provider.name, status=refusal.status, billed=errors.NOT_BILLED,
                    ) from None
                wait = max(wait, settings.overload_wait_seconds * 2 ** (overloads - 1))
            if time.monotonic() + wait > deadline:
                raise errors.RateLimitedError(
                    f"{provider.label} did not accept the request: {refusal.reason}. Nothing was created or "
                    "billed. Wait for running tasks to finish, then run again.",
                    provider=provider.name, status=refusal.status, billed=errors.NOT_BILLED,
                ) from None
            hooks.progress(0.0, f"waiting: {refusal.reason}")
            _wait(wait, hooks, None)
            delay = min(delay * 2, longest)


def _poll_until_done(
    task: SubmittedTask, provider: Provider, hooks: RunHooks, settings: RunSettings, started: float, polls: int,
    *, on_schedule: bool,
) -> tuple[PollUpdate, int]:
    """Poll on the task's own clock: it starts when the provider accepted it, so the upload before
    and the download after neither skew progress-based estimates nor enter the duration history.
    A task not `on_schedule` (resumed, or asked again after a failed download) is older than this
    clock: it is asked at once and teaches the history nothing. Returns the finished update and the
    number of polls so far."""
    schedule = PollSchedule(DURATIONS.expected(provider.name), provider.poll_timing,
                            DURATIONS.hidden_until(provider.name), DURATIONS.aim_margin(provider.name))
    deadline = started + settings.task_timeout_seconds
    accepted = time.monotonic()
    first = polls
    refusals = 0
    progress: float | None = None
    pending = _PendingAnswer()
    while True:
        asked_before = polls - first
        now = time.monotonic()
        predicted = pending.predicted()
        aimed = on_schedule and predicted is not None and predicted > now - accepted  # at a progress-based finish
        delay = schedule.next_delay(now - accepted, asked_before, predicted) if on_schedule or asked_before else 0.0
        _wait(min(delay, max(0.0, deadline - now)), hooks, task)  # the last poll comes at the deadline
        asked = time.monotonic() - accepted
        try:
            update = _poll_once(task, provider, hooks, settings, polls)
            refusals = 0
        except errors.TaskNotVisibleYet:  # not ready at `asked`: the finish lies after it
            update = PollUpdate(done=False, status="submitted; the provider does not show it yet", progress=progress)
            pending = _PendingAnswer(asked, None)
            if on_schedule:
                DURATIONS.record_hidden(provider.name, asked)
        except TransientError as hiccup:
            update = PollUpdate(done=False, status=f"retrying ({hiccup.reason})", progress=progress)
        except errors.AuthenticationError:
            refusals += 1
            if refusals > POLL_AUTH_RETRIES:
                raise
            update = PollUpdate(done=False, status="retrying (the key was refused on a poll)", progress=progress)
        else:
            if not update.done:
                pending = _PendingAnswer(asked, update.progress, answered=time.monotonic() - accepted)
            if aimed:
                DURATIONS.record_aim_margin(provider.name, schedule.margin_after(found_finished=update.done))
        polls += 1
        if update.done:
            if on_schedule:  # ready when the poll was sent, at `asked`: the way back is pickup, not task time
                DURATIONS.record(provider.name, finish_estimate(pending.at, pending.progress, asked,
                                                                schedule.expectation(), schedule.narrow_interval))
            return update, polls
        progress = update.progress if update.progress is not None else progress
        hooks.progress(progress, update.status)
        if time.monotonic() > deadline:
            raise errors.GenerationTimeoutError(
                f"{provider.label} task {task.task_id} did not finish within {settings.task_timeout_seconds:g} s "
                f"(last status: {update.status}). It was not resubmitted; it may still finish on the provider's side.",
                provider=task.provider, task_id=task.task_id, billed=errors.BILLED,
            )


@dataclass(frozen=True)
class _PendingAnswer:
    """The latest poll answered "not ready": seconds after the submit it was sent and answered,
    and its progress."""

    at: float = 0.0
    progress: float | None = None
    answered: float = 0.0

    def predicted(self) -> float | None:
        return aimed_finish(self.at, self.answered, self.progress)


def _poll_once(task: SubmittedTask, provider: Provider, hooks: RunHooks, settings: RunSettings,
               polls: int) -> PollUpdate:
    """One poll that a Cancel interrupts at once and that counts as failed when it hangs."""
    return call_interruptibly(
        lambda stop: provider.poll(task, polls_so_far=polls),
        deadline=time.monotonic() + settings.poll_request_seconds,
        check_cancelled=lambda: raise_if_cancelled(hooks, task),
        on_deadline=lambda: TransientError(f"no answer within {settings.poll_request_seconds:g} s"),
    )


def _wait(seconds: float, hooks: RunHooks, task: SubmittedTask | None) -> None:
    """Sleep in short slices so a cancel is noticed quickly."""
    end = time.monotonic() + seconds
    while True:
        raise_if_cancelled(hooks, task)
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(_WAIT_SLICE, left))


def raise_if_cancelled(hooks: RunHooks, task: SubmittedTask | None) -> None:
    """Raise CancelledError when the caller asked to stop, naming the task already paid if any."""
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
