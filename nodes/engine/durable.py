"""A paid run that never loses its image: the request's lock, the cache, the journal, then a submit.

For one prepared request, in this order:
1. a stored image from the result cache, when there is one (a cache that cannot be read is skipped);
2. take the request's lock (seeded requests), so a second process asking for the same request
   waits for the first instead of paying too, and look in the cache again for what it stored;
3. an unfinished paid task of the same request from the journal whose run has ended (crashed,
   cancelled, timed out), which is polled and fetched instead of paying again (or, after waiting
   for the lock, the task the other process just delivered, whose result is fetched again). A
   task whose run is still polling it (its lease is held) is never taken over: two random-seed
   runs at once are meant to be two images;
4. only then a new submit.
The image is stored in the cache afterwards; a cache that cannot be written (a full disk) costs
the cache entry and a note in the report, never the paid image.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace

from .errors import MAYBE_BILLED, FluxFlexError, SubmitOutcomeUnknown
from .fingerprint import request_fingerprint
from .journal import EXPIRED, UNKNOWN_REPORTED, JournalEntry, TaskJournal
from .prepared import GenerationResult, PreparedRequest, RunHooks, RunSettings
from .providers.base import Provider
from .result_cache import ResultCache, cache_key


def generate_cached(
    prepared: PreparedRequest,
    provider: Provider,
    cache: ResultCache | None,
    *,
    journal: TaskJournal | None = None,
    hooks: RunHooks = RunHooks(),
    settings: RunSettings = RunSettings(),
) -> GenerationResult:
    """The image for `prepared`: from the cache, from a paid task of the same request (with a
    journal), or paid now and stored. The cache is read once before the request's lock: a stored
    image needs neither the lock nor the runner, so a hit (the command line's) loads neither."""
    fingerprint = request_fingerprint(provider.name, prepared.request)
    key = cache_key(provider.name, prepared.request, fingerprint)  # no hashing: the fingerprint is given
    stored = _from_cache(cache, key, hooks)
    if stored is not None:
        return stored
    from .runner import generate  # the paid path only

    asked = time.time()
    with _lock_for(prepared, fingerprint, cache, journal, hooks) as waited:
        stored = _from_cache(cache, key, hooks)  # stored meanwhile by the run this one waited for
        if stored is not None:
            return stored
        _refuse_after_unknown_outcome(journal, provider, fingerprint)
        with journal.lease() if journal is not None else nullcontext("") as owner:
            resume, notes = _resumable(journal, provider, fingerprint, asked if waited else None, owner)
            try:
                result = generate(prepared, provider, hooks=hooks, settings=settings, journal=journal, resume=resume,
                                  owner=owner, fingerprint=fingerprint)
            finally:
                if resume is not None and journal is not None:
                    journal.release(resume)
        return _write_cache(cache, key, replace(result, notes=result.notes + notes))


def recover(
    entry: JournalEntry,
    provider: Provider,
    journal: TaskJournal,
    *,
    hooks: RunHooks = RunHooks(),
    settings: RunSettings = RunSettings(),
) -> GenerationResult:
    """The image of a recorded paid task, fetched from the provider without paying again."""
    if not entry.poll_url:
        raise FluxFlexError(f"{entry.task_id} is a submit whose outcome is unknown: there is no task to fetch. "
                            f"Check your {provider.label} dashboard.", provider=provider.name)
    from .runner import deliver

    started = time.monotonic()
    hooks.progress(0.0, f"recovering paid task {entry.task_id}")
    task = entry.task()
    update, pixels = deliver(task, provider, hooks=hooks, settings=settings, journal=journal, entry=entry,
                             price=entry.price)
    return GenerationResult(
        image=pixels, provider=provider.name, task_id=task.task_id,
        seed=update.seed if update.seed is not None else entry.seed, estimate=entry.cost_estimate(),
        reported_cost=update.reported_cost if update.reported_cost is not None else task.reported_cost,
        input_mp=None, output_mp=None, seconds=time.monotonic() - started,
        notes=(f"recovered {provider.label} task {task.task_id}, paid earlier ({entry.summary}): nothing new was paid",),
    )


def _lock_for(prepared: PreparedRequest, fingerprint: str, cache: ResultCache | None, journal: TaskJournal | None,
              hooks: RunHooks):
    """The request's lock in the journal's folder (else the cache's). A random-seed request is not
    locked: two of them are meant to be two different images."""
    folder = journal.folder if journal is not None else cache.folder if cache is not None else None
    if folder is None or prepared.request.seed is None:
        return nullcontext(False)
    from .request_lock import request_lock
    from .runner import raise_if_cancelled

    return request_lock(folder / "locks", fingerprint, cancelled=lambda: raise_if_cancelled(hooks, None))


def _refuse_after_unknown_outcome(journal: TaskJournal | None, provider: Provider, fingerprint: str) -> None:
    """Once, before sending a request whose last submit may have created a task: say so instead."""
    doubt = journal.unknown_outcome(provider.name, fingerprint) if journal is not None else None
    if doubt is None:
        return
    journal.mark(doubt, UNKNOWN_REPORTED)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(doubt.created))
    raise SubmitOutcomeUnknown(
        f"Not sent: an earlier submit of this request ({when}) may have created a paid {provider.label} task "
        f"({doubt.extra.get('reason', 'no answer')}). Check your {provider.label} dashboard; run again to send a "
        f"new request anyway (it costs {doubt.price}).", provider=provider.name, billed=MAYBE_BILLED,
    )


def _resumable(journal: TaskJournal | None, provider: Provider, fingerprint: str, delivered_after: float | None,
               owner: str) -> tuple[JournalEntry | None, tuple[str, ...]]:
    """A recorded task of this request, whose run has ended, to poll instead of paying; one past
    every provider's retention is marked expired and skipped, saying so. The task passes to this
    run's lease, `owner`."""
    notes: tuple[str, ...] = ()
    if journal is None:
        return None, notes
    while (entry := journal.claim(provider.name, fingerprint, owner, delivered_after=delivered_after)) is not None:
        if not journal.expired(entry):
            return entry, notes
        journal.mark(entry, EXPIRED)
        journal.release(entry)
        notes += (f"paid task {entry.task_id} of this request was too old to resume (providers keep results about "
                  "an hour), so a new one was sent",)
    return None, notes


def _from_cache(cache: ResultCache | None, key: str | None, hooks: RunHooks) -> GenerationResult | None:
    if cache is None or key is None:
        return None
    try:
        stored = cache.get(key)
    except OSError:
        return None  # an unreadable cache is a cache miss, not a failed run
    if stored is not None:
        hooks.progress(1.0, "from the result cache")
    return stored


def _write_cache(cache: ResultCache | None, key: str | None, result: GenerationResult) -> GenerationResult:
    if cache is None or key is None:
        return result
    try:
        cache.put(key, result)
    except (OSError, ValueError, FluxFlexError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        return replace(result, notes=result.notes + (f"not stored in the result cache ({reason}); the image is "
                                                     "delivered all the same",))
    return result
