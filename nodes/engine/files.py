"""Writing a file so that a reader sees the old content or the new one, never half of either,
also after a crash; and saying so when a file someone else wrote cannot be read."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

TEMPORARY_PREFIX = ".tmp-"  # names of files being written; a reader skips them
LOG = logging.getLogger("comfyui_flux2_flex")
_warned: set[Path] = set()
_warned_lock = threading.Lock()


def skip_unreadable(path: Path, what: str, reason: object) -> None:
    """Warn, once per file and process, that a record (a journal entry, a cache entry) was skipped:
    a damaged or hand-edited file costs that record, never the command that met it."""
    with _warned_lock:
        if path in _warned:
            return
        _warned.add(path)
    LOG.warning("flux-flex: skipped unreadable %s %s (%s); everything else keeps working", what, path, reason)


def write_atomically(path: Path, data: bytes, *, mode: int | None = None, durable: bool = False) -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place.

    `mode` (such as 0o600 for keys) is set on the temporary file before any byte is written, so
    a secret is never readable by others, not even for a moment. `durable` also flushes the file
    and its folder to the disk before returning, for records that must survive a power cut (the
    journal of paid tasks), at the cost of a few milliseconds.
    """
    import tempfile  # with shutil and random: a command that writes nothing (a cache hit) never loads them

    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY_PREFIX, suffix=path.suffix)
    try:
        if mode is not None:
            os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable and hasattr(os, "O_DIRECTORY"):  # the rename itself reaches the disk (POSIX only)
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
