"""An upload's encoded bytes kept in a temporary file rather than in memory.

A reference the command line reads from a file never holds its pixels in memory between uses
(request.PixelSource); its upload is kept on disk for the same reason: eight 4 MP PNG references
are about 100 MB of base64. The request's body reads it back in slices as it sends
(providers/upload_body.py), as often as a retry needs, and the file is gone with the last
reference to it, or with the process.
"""

from __future__ import annotations

import tempfile
import threading
from typing import Iterator


class SpooledUpload:
    """Bytes appended once, then read any number of times, from any thread, by position."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # closed and deleted with this object: no name on POSIX
        self._length = 0
        self._lock = threading.Lock()  # one file position: a read and a write never interleave

    def write(self, data: bytes) -> int:
        with self._lock:
            self._file.seek(self._length)
            self._file.write(data)
            self._length += len(data)
        return len(data)

    def __len__(self) -> int:
        return self._length

    def slices(self, size: int) -> Iterator[bytes]:
        """The bytes from the start, at most `size` at a time; each slice is read under the lock,
        so two sends of the same upload (a batch's items) can read it at once."""
        position = 0
        while position < self._length:
            with self._lock:
                self._file.seek(position)
                piece = self._file.read(min(size, self._length - position))
            if not piece:
                raise OSError(f"the spooled upload ended at {position} of {self._length} bytes")
            position += len(piece)
            yield piece

    def __bytes__(self) -> bytes:
        """All of it at once, for the rare body that cannot be streamed (a multipart form)."""
        return b"".join(self.slices(max(self._length, 1)))
