"""Reference images the command line reads from files, decoded only while they are used.

Held as arrays, eight 4 MP references cost 96 MB before a byte is sent, and decoding each one
leaves its file's bytes, Pillow's image and the array alive together. A ReferenceFile holds the
file's name and identity instead. It is decoded once when it is named, to refuse a damaged file
and learn its upright size (a PNG's EXIF orientation may follow its pixels), and let go; then again
whenever its pixels are fingerprinted or encoded for upload, one file per encoder at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from .errors import FluxFlexError
from .images import capitalised, decode_picture
from .request import PixelSource

FileIdentity = tuple[int, int, int, int]  # device, inode, size, modification time in ns


@dataclass(frozen=True)
class ReferenceFile(PixelSource):
    """An image file named on the command line, decoded anew each time its pixels are needed."""

    path: Path
    identity: FileIdentity
    upright: tuple[int, int]
    label: str  # how messages name it, e.g. "reference image photo.png"

    @classmethod
    def open(cls, path: Path, *, label: str) -> ReferenceFile:
        """The file decoded once to check it (an image Pillow reads, whole, within the pixel cap)."""
        with _opened(path, label) as file:
            identity = _identity(os.fstat(file.fileno()))
            return cls(path, identity, decode_picture(file, source=label).size, label)

    @property
    def size(self) -> tuple[int, int]:
        return self.upright

    def picture(self) -> Image.Image:
        """The file decoded again, refused if it is no longer the file that was checked: its
        pixels would differ from those fingerprinted, or those a batch's other items sent."""
        with _opened(self.path, self.label) as file:
            if _identity(os.fstat(file.fileno())) != self.identity:
                raise FluxFlexError(f"{capitalised(self.label)} changed on disk while the command was using it, so "
                                    "it was not read again; run the command again.")
            return decode_picture(file, source=self.label)


def _opened(path: Path, label: str) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as error:
        raise FluxFlexError(f"Cannot read {label}: {error.strerror}") from None


def _identity(stat: os.stat_result) -> FileIdentity:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns
