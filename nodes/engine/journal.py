"""A durable journal of paid tasks: what was paid for survives a crash, a restart or a Cancel.

The runner records a task the moment a provider accepts a submit, before its first poll: the
provider, the task id, where to poll it, the request's fingerprint, its price and its state. A
rerun of the same request finds the unfinished task here and polls it instead of paying again;
`flux-flex tasks` / `flux-flex recover ID` and the Recover node read the same records. A record
never holds an API key: polling URLs carry none (keys travel in headers, added per request).

One JSON file per task, written to a temporary file, flushed to the disk and renamed into place,
so a crash at any moment leaves either the old record or the new one. Records the process cannot
read (a half-written file from another tool, a newer format, a damaged field) are skipped with a
warning naming the file, never fatal.

How long a task can be resumed, per provider (public documentation):
- BFL (and CometAPI, which relays BFL): the result's signed URL lasts 10 minutes
  (https://docs.bfl.ai/integration_guidelines); polling the task's own
  `polling_url` again returns its result; how long get_result keeps a task is not documented.
- Replicate: a prediction created through the API has its inputs and outputs deleted after an
  hour (https://replicate.com/docs/topics/predictions/data-retention); `urls.get` can be polled
  until then.
- fal: the queue keeps a completed request's result for 1 hour (6 minutes for results of 10 KB or
  more; ours are a few hundred bytes) (https://fal.ai/docs/inference-api/queue/result).
- Apiframe: no retention is documented; its job can be polled by id.
So RESUME_WINDOW_SECONDS is one hour: within it a rerun polls the task (and a provider that has
forgotten it says so, which is reported, not resubmitted); past it, the task is marked expired
and the rerun submits afresh, saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .file_lock import try_lock, unlock
from .files import TEMPORARY_PREFIX, skip_unreadable, write_atomically
from .pricing import CostEstimate

if TYPE_CHECKING:
    from .providers.tasks import SubmittedTask

SUBMITTED = "submitted"  # accepted by the provider, image not yet delivered: resumable
DELIVERED = "delivered"  # the image reached the caller
FAILED = "failed"  # the provider ended the task without an image (failed, moderated)
EXPIRED = "expired"  # the provider no longer has the task or its result
UNKNOWN = "outcome unknown"  # the submit may have created a task (a 5xx, a broken connection): no id
UNKNOWN_REPORTED = "outcome unknown, reported"  # a rerun was told once; the next one sends
LEASES = "leases"  # the folder of the running runs' lease files
RESUME_WINDOW_SECONDS = 3600.0
KEPT_SECONDS = 7 * 24 * 3600.0  # records are pruned after this
JOURNAL_VERSION = 1


@dataclass(frozen=True)
class JournalEntry:
    """One paid task as recorded."""

    provider: str
    task_id: str
    poll_url: str
    fingerprint: str
    estimate: Mapping[str, Any]  # the CostEstimate shown before it was sent, as JSON
    state: str
    created: float
    updated: float
    summary: str = ""
    seed: int | None = None
    reported_cost: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    owner: str = ""  # the lease of the run polling it (see TaskJournal.lease); "" for records before leases

    def cost_estimate(self) -> CostEstimate:
        return CostEstimate(**{**self.estimate, "breakdown": tuple(self.estimate.get("breakdown", ()))})

    @property
    def price(self) -> str:
        return self.cost_estimate().summary()

    def task(self) -> SubmittedTask:
        """The task as the provider's poll expects it."""
        from .providers.tasks import SubmittedTask  # a resumed or recovered task's: a cache hit never makes one

        return SubmittedTask(provider=self.provider, task_id=self.task_id, poll_url=self.poll_url,
                             reported_cost=self.reported_cost, extra=dict(self.extra))

    def describe(self) -> str:
        """One line for `flux-flex tasks` and the Recover node's list."""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        return f"{self.task_id}  {self.provider}  {self.state}  {when}  {self.price}  {self.summary}"


def default_journal_folder(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user folder the CLI keeps its journal in when no --cache-dir is given."""
    env = os.environ if environ is None else environ
    if os.name == "nt" and env.get("LOCALAPPDATA"):
        base = Path(env["LOCALAPPDATA"])
    else:
        base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "flux2-flex"


class TaskJournal:
    """Records of paid tasks in `folder`; safe to share between threads and processes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._claimed: set[str] = set()  # tasks a thread of this process is resuming right now
        self._lock = threading.Lock()

    @contextmanager
    def lease(self) -> Iterator[str]:
        """A run's lease, held while it runs: a lock the operating system drops if the process dies.
        A task recorded under a lease is in flight while the lease is held, so no other run (another
        process, or another thread of this one) takes it over; once its run ended or crashed, a
        rerun may resume it."""
        folder = self.folder / LEASES
        folder.mkdir(parents=True, exist_ok=True)
        owner = os.urandom(16).hex()  # a random name (uuid would load `platform`, on every command)
        path = folder / f"{owner}.lock"
        with open(path, "a+b") as handle:
            try_lock(handle)  # a new file: nobody else can hold it
            try:
                yield owner
            finally:
                unlock(handle)
                path.unlink(missing_ok=True)

    def in_flight(self, entry: JournalEntry) -> bool:
        """Whether the run that recorded `entry` still holds its lease."""
        if not entry.owner:
            return False
        path = self.folder / LEASES / f"{entry.owner}.lock"
        try:
            handle = open(path, "r+b")
        except OSError:
            return False  # its run ended and removed its lease
        with handle:
            if not try_lock(handle):
                return True
            unlock(handle)
        path.unlink(missing_ok=True)  # its run died without removing it
        return False

    def record(self, task: SubmittedTask, *, fingerprint: str, estimate: CostEstimate, summary: str,
               seed: int | None, owner: str = "") -> JournalEntry:
        """Write a just-accepted task durably; called before its first poll. `owner`: the run's lease."""
        now = time.time()
        entry = JournalEntry(task.provider, task.task_id, task.poll_url, fingerprint, asdict(estimate), SUBMITTED,
                             now, now, summary, seed, task.reported_cost, _json_safe(task.extra), owner)
        self._write(entry)
        return entry

    def record_unknown(self, provider: str, *, fingerprint: str, estimate: CostEstimate, summary: str,
                       seed: int | None, reason: str) -> JournalEntry:
        """A submit whose outcome is unknown: there is no task id, but a rerun must not pay blindly."""
        now = time.time()
        entry = JournalEntry(provider, f"unknown-{os.urandom(6).hex()}", "", fingerprint, asdict(estimate), UNKNOWN,
                             now, now, summary, seed, None, {"reason": reason})
        self._write(entry)
        return entry

    def unknown_outcome(self, provider: str, fingerprint: str) -> JournalEntry | None:
        """An earlier submit of this request whose outcome is unknown and not yet reported to a rerun."""
        return next((entry for entry in self.entries() if entry.provider == provider
                     and entry.fingerprint == fingerprint and entry.state == UNKNOWN), None)

    def expired(self, entry: JournalEntry) -> bool:
        """Older than any provider keeps a task's result (see the module's notes)."""
        return time.time() - entry.created > RESUME_WINDOW_SECONDS

    def mark(self, entry: JournalEntry, state: str) -> JournalEntry:
        updated = replace(entry, state=state, updated=time.time())
        self._write(updated)
        return updated

    def find(self, task_id: str) -> JournalEntry | None:
        return next((entry for entry in self.entries() if entry.task_id == task_id), None)

    def entries(self) -> list[JournalEntry]:
        """Every readable record, oldest first; one that cannot be read is skipped with a warning."""
        found = []
        for path in self.folder.glob("*.json"):
            if path.name.startswith(TEMPORARY_PREFIX):
                continue  # a write a crash cut short: the record it was replacing is still in place
            try:
                found.append(_read_entry(path))
            except (OSError, ValueError, TypeError, KeyError, OverflowError) as error:
                skip_unreadable(path, "journal record", error)
        return sorted(found, key=lambda entry: entry.created)

    def undelivered(self) -> list[JournalEntry]:
        """Paid tasks whose image has not reached anyone yet, and submits whose outcome is unknown:
        what `flux-flex tasks` lists."""
        return [entry for entry in self.entries() if entry.state in (SUBMITTED, UNKNOWN)]

    def claim(self, provider: str, fingerprint: str, owner: str = "", *,
              delivered_after: float | None = None) -> JournalEntry | None:
        """An unfinished task of this request that no other run is polling (no thread here resumes
        it, no live run holds its lease), now claimed.

        `delivered_after`: also a task delivered since then (by another process that held the
        request's lock while this one waited): its result is fetched again instead of paid again.
        """
        with self._lock:
            for entry in self.entries():
                if entry.provider != provider or entry.fingerprint != fingerprint or entry.task_id in self._claimed:
                    continue
                recent = delivered_after is not None and entry.state == DELIVERED and entry.updated >= delivered_after
                if (entry.state == SUBMITTED and not self.in_flight(entry)) or recent:
                    self._claimed.add(entry.task_id)
                    if owner and entry.state == SUBMITTED:
                        entry = replace(entry, owner=owner)
                        self._write(entry)  # now in flight under the claiming run's lease
                    return entry
        return None

    def release(self, entry: JournalEntry) -> None:
        with self._lock:
            self._claimed.discard(entry.task_id)

    def _write(self, entry: JournalEntry) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"version": JOURNAL_VERSION, **asdict(entry)}, indent=1).encode()
        write_atomically(self._path(entry.provider, entry.task_id), data, durable=True)
        if entry.state != SUBMITTED:  # pruning reads every record: not on the way to a task's first poll
            self._prune()

    def _path(self, provider: str, task_id: str) -> Path:
        # Task ids come from the provider: hashed, they can never name a path outside the folder.
        return self.folder / (hashlib.sha256(f"{provider}\n{task_id}".encode()).hexdigest()[:40] + ".json")

    def _prune(self) -> None:
        """Forget records a week old: by then no provider still has the task (see the notes above)."""
        cutoff = time.time() - KEPT_SECONDS
        for entry in self.entries():
            if entry.updated < cutoff:
                self._path(entry.provider, entry.task_id).unlink(missing_ok=True)


def _read_entry(path: Path) -> JournalEntry:
    """One record, checked as far as every reader uses it (its price, its times), so that a damaged
    or hand-edited record fails here, where it is skipped, not in the middle of a listing."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or raw.pop("version", None) != JOURNAL_VERSION:
        raise ValueError(f"not a version {JOURNAL_VERSION} record")
    entry = JournalEntry(**raw)
    if not all(isinstance(value, (int, float)) for value in (entry.created, entry.updated)):
        raise ValueError("its times are not numbers")
    entry.describe()
    return entry


def _json_safe(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The provider's extra fields that survive a round trip through JSON (URLs, finished answers)."""
    safe = {}
    for name, value in extra.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        safe[name] = value
    return safe
