"""Several requests at once: up to the provider's concurrency limit, results in input order.

A batch of 8 waits about as long as one image instead of eight. Each item follows the same
never-pay-twice lifecycle as a single run (runner.generate); a failure of one item never
discards the images already paid for: they come back in `BatchError.results`.
"""

from __future__ import annotations

import threading
from typing import Sequence

from .durable import generate_cached
from .errors import BILLED, NOT_BILLED, CancelledError, FluxFlexError
from .journal import TaskJournal
from .prepared import GenerationResult, PreparedRequest, RunHooks, RunSettings
from .providers.base import Provider
from .result_cache import ResultCache


class BatchError(FluxFlexError):
    """Some items failed: the message names each (position and seed); successes are kept."""

    def __init__(self, results: dict[int, GenerationResult], failures: dict[int, FluxFlexError],
                 prepared: Sequence[PreparedRequest]) -> None:
        self.results = results
        self.failures = failures
        lines = [f"{len(failures)} of {len(prepared)} images failed:"]
        for index, error in sorted(failures.items()):
            lines.append(f"image {index + 1} (seed {prepared[index].request.seed}): {error}")
        super().__init__("\n".join(lines))


class _BatchProgress:
    """Averages the items' progress into one bar; statuses are passed through as they come."""

    def __init__(self, hooks: RunHooks, count: int) -> None:
        self._hooks = hooks
        self._fractions = [0.0] * count
        self._lock = threading.Lock()

    def hooks_for(self, index: int) -> RunHooks:
        def on_progress(fraction: float | None, status: str) -> None:
            with self._lock:
                if fraction is not None:
                    self._fractions[index] = fraction
                overall = sum(self._fractions) / len(self._fractions)
            self._hooks.progress(overall, f"image {index + 1}: {status}")

        return RunHooks(on_progress=on_progress, is_cancelled=self._hooks.is_cancelled,
                        on_submitted=self._hooks.on_submitted)


def generate_batch(
    prepared: Sequence[PreparedRequest],
    provider: Provider,
    *,
    hooks: RunHooks = RunHooks(),
    settings: RunSettings = RunSettings(),
    max_concurrency: int | None = None,
    cache: ResultCache | None = None,
    journal: TaskJournal | None = None,
) -> list[GenerationResult]:
    """Run every prepared request, at most `max_concurrency` (default: the provider's) at once."""
    if len(prepared) == 1:
        return [generate_cached(prepared[0], provider, cache, hooks=hooks, settings=settings, journal=journal)]
    from concurrent.futures import ThreadPoolExecutor  # threads for several images only, not for one (a cache hit)

    workers = min(len(prepared), max_concurrency or provider.limits.max_concurrency)
    progress = _BatchProgress(hooks, len(prepared))
    results: dict[int, GenerationResult] = {}
    failures: dict[int, FluxFlexError] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flux-flex") as pool:
        futures = {
            index: pool.submit(generate_cached, item, provider, cache, hooks=progress.hooks_for(index),
                               settings=settings, journal=journal)
            for index, item in enumerate(prepared)
        }
        for index, future in futures.items():
            try:
                results[index] = future.result()
            except FluxFlexError as error:
                failures[index] = error
            except Exception as error:  # a bug in one item must not throw away the images others paid for
                failures[index] = FluxFlexError(f"unexpected {type(error).__name__}: {error}")
    if not failures:
        return [results[index] for index in range(len(prepared))]
    if all(isinstance(error, CancelledError) for error in failures.values()):
        raise _batch_cancelled(results, failures)
    raise BatchError(results, failures, prepared)


def _batch_cancelled(results: dict[int, GenerationResult], failures: dict[int, FluxFlexError]) -> CancelledError:
    """One message naming every task that was paid: those stopped mid-poll and those that finished."""
    stopped = [error.task_id for error in failures.values() if isinstance(error, CancelledError) and error.task_id]
    finished = [result.task_id for result in results.values() if not result.from_cache]
    paid = ", ".join(stopped + finished) or "none"
    return CancelledError(
        f"Cancelled. {len(stopped) + len(finished)} task(s) had been submitted and are billed ({paid}); none was "
        f"resubmitted. {len(finished)} of them had finished, {len(failures)} image(s) were not produced. Run the "
        "same request again to resume the unfinished ones without paying again, or recover one by its id "
        "(`flux-flex recover ID`, or the FLUX.2 [flex] Recover paid task node).",
        billed=BILLED if stopped or finished else NOT_BILLED,
    )
