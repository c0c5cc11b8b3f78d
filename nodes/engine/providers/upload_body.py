"""A provider's JSON body with its input images spliced in as bytes, never copied whole.

`json.dumps` of a body that holds eight 4 MP references as base64 text makes one str of about
100 MB, `.encode()` a second copy as bytes, beside the base64 strings themselves: about 4.9 times
the pixels at the peak. Here the body is dumped with a short placeholder where each image goes,
split at the placeholders, and sent as its pieces: the JSON text around the images, and each
image's base64 exactly as `images.upload_base64` keeps it (in memory, or in a temporary file for
a reference read from a file). The only whole copy of an image's data is that encoding, made once
per image and format however many batch items or retries send it.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..request import InputImage
from ..spooled_upload import SpooledUpload

ImageEncoder = Callable[[InputImage], str]  # what a provider's body carries for an image
BodyBuilder = Callable[[ImageEncoder], dict[str, Any]]
SEND_SLICE = 256 * 1024


@dataclass(frozen=True)
class UploadBody:
    """The body's bytes in order, with its length for the Content-Length header (httpx then sends
    the pieces one after another, not chunked)."""

    pieces: tuple[bytes | SpooledUpload, ...]

    @property
    def length(self) -> int:
        return sum(len(piece) for piece in self.pieces)

    def __iter__(self) -> Iterator[bytes | memoryview]:
        """The pieces in slices of at most SEND_SLICE bytes, without copying them: the HTTP stack
        copies what it is handed once more, and re-slices what a socket send left over (httpcore's
        `buffer = buffer[n:]`), so a whole 17 MB image handed over at once costs a second 17 MB
        and quadratic copying."""
        for piece in self.pieces:
            if isinstance(piece, SpooledUpload):
                yield from piece.slices(SEND_SLICE)
                continue
            view = memoryview(piece)
            for start in range(0, len(view), SEND_SLICE):
                yield view[start:start + SEND_SLICE]


def build_upload_body(build: BodyBuilder, upload_format: str, *, data_uri: bool) -> UploadBody:
    """The body `build` makes, each image in `upload_format` as raw base64 or as a data: URI.

    `build` gets an encoder that stands in a placeholder for each image; the placeholders carry a
    random nonce, so no prompt text can be mistaken for one.
    """
    from ..images import MIME_TYPES, upload_all_base64  # numpy and Pillow: loaded by a submit, not by every provider

    nonce = secrets.token_hex(8)
    images: list[InputImage] = []

    def placeholder(image: InputImage) -> str:
        images.append(image)
        return f"flux-flex-image-{nonce}-{len(images) - 1}"

    text = json.dumps(build(placeholder))  # ASCII only: every placeholder appears as it was written
    uploads = upload_all_base64(images, upload_format)
    prefix = f"data:{MIME_TYPES[upload_format]};base64,".encode() if data_uri else b""
    pieces: list[bytes | SpooledUpload] = []
    for index, part in enumerate(re.split(f"flux-flex-image-{nonce}-(\\d+)", text)):
        if index % 2 == 0:
            pieces.append(part.encode())
        else:
            pieces.extend((prefix, uploads[int(part)]) if prefix else (uploads[int(part)],))
    return UploadBody(tuple(piece for piece in pieces if piece))
