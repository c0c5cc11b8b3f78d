"""Non-blocking exclusive locks on open files, which the operating system drops when the process
holding them dies, so a crash never leaves a lock behind.

POSIX: `flock` on the whole file. Windows: `msvcrt.locking` on the file's first byte; Windows
unlocks a dead process's locks itself ("If a process terminates with a portion of a file locked
... the locks are unlocked by the operating system",
https://learn.microsoft.com/en-us/windows/win32/api/fileapi/nf-fileapi-lockfileex).
Both lock per open file: two handles on the same file exclude each other, also in one process.
"""

from __future__ import annotations

import os
from typing import BinaryIO

if os.name == "nt":
    import msvcrt
else:
    import fcntl


def try_lock(handle: BinaryIO) -> bool:
    """Take the file's lock if it is free; whether it was taken."""
    try:
        if os.name == "nt":
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def unlock(handle: BinaryIO) -> None:
    if os.name == "nt":
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
