"""The provider's cap on active tasks, shared by every process on this machine that uses the key.

BFL runs at most 24 tasks per account at once and refuses the next submit with a 429
(https://help.bfl.ai/articles/2916279050-why-did-my-request-fail). A batch caps its own threads
at the provider's limit, but two processes with the same key (two ComfyUIs, a ComfyUI and the
command line) would together exceed it, and a refused submit backs off while freed capacity
stays idle. So every new submit first takes one of the cap's slots, and gives it back as soon as
its task has finished on the provider's side (the download does not count against the cap).

A slot is an exclusive lock (file_lock.py) on one of `limits.max_concurrency` files, in a folder
of the per-user cache named after the provider and a one-way hash of the key (never the key): two
keys, two accounts, two sets of slots. The operating system drops the locks of a process that
dies, so a killed run never keeps a slot. A waiting thread tries again at once when a slot of its
own process is given back, and every `SLOT_POLL_SECONDS` for other processes' slots.

Slots only make 429s rare on this machine: other machines on the same account still count, so a
429 is still waited out by the runner. A folder that cannot be used (a read-only home) costs only
this coordination, never the run.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import BinaryIO, Callable

from .file_lock import try_lock, unlock
from .journal import default_journal_folder
from .providers.base import Provider

SLOT_POLL_SECONDS = 0.1  # a slot freed by another process is taken within this (the issue asks 0.5 s)
SLOTS_FOLDER = "slots"


class TaskSlots:
    """`count` slots in `folder`, shared with every other process that opens the same folder."""

    def __init__(self, folder: Path, count: int) -> None:
        self.folder = folder
        self.count = count
        self._handles: dict[int, BinaryIO] = {}  # opened once and kept: a lock belongs to its open file
        self._held: set[int] = set()  # slots a thread of this process holds
        self._changed = threading.Condition()

    def take(self, cancelled: Callable[[], None], on_wait: Callable[[], None] | None = None) -> "Slot":
        """A free slot, waiting for one; `cancelled` is called while waiting and raises to stop."""
        with self._changed:
            waited = False
            while True:
                try:
                    index = self._take_free()
                except OSError:
                    return Slot(None)  # no usable folder: run without cross-process coordination
                if index is not None:
                    return Slot(lambda: self._release(index))
                cancelled()
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                self._changed.wait(SLOT_POLL_SECONDS)

    def held(self) -> int:
        """How many slots this process holds."""
        with self._changed:
            return len(self._held)

    def _release(self, index: int) -> None:
        with self._changed:
            unlock(self._handles[index])
            self._held.discard(index)
            self._changed.notify()

    def _take_free(self) -> int | None:
        for index in range(self.count):
            if index not in self._held and try_lock(self._handle(index)):
                self._held.add(index)
                return index
        return None

    def _handle(self, index: int) -> BinaryIO:
        if index not in self._handles:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._handles[index] = open(self.folder / f"slot-{index:02d}.lock", "a+b")  # noqa: SIM115 (kept open)
        return self._handles[index]


class Slot:
    """One held slot; `release` gives it back (once, however often it is called)."""

    def __init__(self, give_back: Callable[[], None] | None) -> None:
        self._give_back = give_back
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            give_back, self._give_back = self._give_back, None
        if give_back is not None:
            give_back()


_registry: dict[Path, TaskSlots] = {}
_registry_lock = threading.Lock()


def slots_folder(provider: Provider) -> Path:
    """The provider's slots for its key: named by the account the key opens (bfl, bfl-eu and bfl-us
    share BFL's key and its one cap) and a one-way hash of the key."""
    account = provider.key_name or provider.name
    return default_journal_folder() / SLOTS_FOLDER / f"{account}-{provider.api_key.one_way_tag()}"


def task_slots(provider: Provider) -> TaskSlots:
    """The process's one TaskSlots for this provider and key."""
    folder = slots_folder(provider)
    with _registry_lock:
        if folder not in _registry:
            _registry[folder] = TaskSlots(folder, provider.limits.max_concurrency)
        return _registry[folder]
