"""One lock per request across processes: two runs of the same request at once pay once.

An advisory lock (file_lock.py) on a file named after the request's fingerprint, in the journal's
folder. The operating system drops it when its process dies, so a crash never leaves a stale lock.
Waiting for it is done in short slices, so Cancel and Ctrl-C still act within a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .file_lock import try_lock, unlock

LOCK_POLL_SECONDS = 0.05


@contextmanager
def request_lock(folder: Path, fingerprint: str, *, cancelled: Callable[[], None]) -> Iterator[bool]:
    """Hold the request's lock; yields whether another process held it first (so this one waited).

    `cancelled` is called while waiting and raises to stop the wait.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{fingerprint[:40]}.lock", "a+b") as handle:
        waited = False
        while not try_lock(handle):
            waited = True
            cancelled()
            time.sleep(LOCK_POLL_SECONDS)
        try:
            yield waited
        finally:
            unlock(handle)
