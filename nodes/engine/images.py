"""Pixels <-> bytes: uint8 RGB arrays encoded for upload, downloaded bytes decoded safely.

The engine works on uint8 [H, W, 3] numpy arrays only; ComfyUI's IMAGE tensors are converted
to and from them outside the engine (nodes/tensors.py), so the engine and the command line run
without torch.
"""

from __future__ import annotations

import base64
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Sequence

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageDecodeError, InvalidRequestError, ResultTooLargeError
from .request import MEGAPIXEL, UPLOAD_FORMATS, InputImage, downscaled_size
from .spooled_upload import SpooledUpload

# Chosen by bench/bench_throughput.py (zlib_levels) on 4 MP images, 2 cores: on a photographic
# image zlib level 1 takes 0.8-0.9 of the default level 6's time (0.46-0.55 s against 0.55-0.60 s)
# for 2.5% more bytes, on a flat one (a screenshot, typography) 0.7 of the time for files still 50
# times smaller than the pixels; level 3 is no faster than 1. Level 0 halves level 1's time on a
# photograph but sends 26% more bytes, and 55 times more on a flat image: on any uplink slower
# than loopback that costs more than it saves. Level 1 is the fastest level that does not.
PNG_COMPRESS_LEVEL = 1
JPEG_QUALITY = 95
WEBP_QUALITY = 95
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
DECODABLE_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "MPO"})  # MPO: some JPEGs from phones
MAX_DECODED_PIXELS = 64 * MEGAPIXEL  # far above any output size; stops decompression bombs
WHITE = 255


@dataclass(frozen=True)
class Downscaled:
    pixels: np.ndarray
    note: str | None


def downscale_to_max_pixels(pixels: np.ndarray, max_pixels: int, *, label: str) -> Downscaled:
    """Shrink an image over the provider's cap with a Lanczos filter, keeping its aspect."""
    height, width = pixels.shape[:2]
    new_w, new_h = downscaled_size(width, height, max_pixels)
    if (new_w, new_h) == (width, height):
        return Downscaled(pixels, None)
    resized = Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.LANCZOS)
    note = f"{label} downscaled from {width}x{height} to {new_w}x{new_h} (limit {max_pixels / MEGAPIXEL:g} MP)"
    return Downscaled(np.asarray(resized), note)


def upload_base64(image: InputImage, image_format: str) -> bytes | SpooledUpload:
    """The image encoded in `image_format`, as the base64 bytes a JSON body carries.

    Made once per image and format (kept with the image), however many batch items or retries
    send it. The encoder's output is turned into base64 as it comes, so the base64 is the only
    whole copy of the file ever held. It is kept where the image is: an array's in memory, a
    file's in a temporary file (eight 4 MP PNG references are about 100 MB of base64, more than
    their pixels, which such an image never holds either).
    """
    return image.derived(("upload", image_format), lambda: _encoded(image, image_format))


def upload_all_base64(images: Sequence[InputImage], image_format: str) -> list[bytes | SpooledUpload]:
    """`upload_base64` of each image, the distinct ones encoded in parallel: Pillow's encoders
    release the GIL, so eight references take about the time of one on eight cores."""
    distinct = list({id(image): image for image in images}.values())
    workers = min(len(distinct), os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flux-flex-encode") as pool:
            list(pool.map(lambda image: upload_base64(image, image_format), distinct))
    return [upload_base64(image, image_format) for image in images]


def _encoded(image: InputImage, image_format: str) -> bytes | SpooledUpload:
    """The image encoded for upload, in base64: PNG is lossless, JPEG and WebP are smaller and lossy."""
    if image_format not in UPLOAD_FORMATS:
        raise InvalidRequestError("upload_format", image_format, f"one of {', '.join(UPLOAD_FORMATS)}")
    target: io.BytesIO | SpooledUpload = io.BytesIO() if image.in_memory else SpooledUpload()
    sink = _Base64Sink(target)
    picture = image.picture()
    if image_format == "png":
        picture.save(sink, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif image_format == "jpeg":
        picture.save(sink, format="JPEG", quality=JPEG_QUALITY)
    else:
        picture.save(sink, format="WEBP", quality=WEBP_QUALITY)
    sink.finish()
    return target.getvalue() if isinstance(target, io.BytesIO) else target  # BytesIO hands its buffer over uncopied


class _Base64Sink:
    """A write-only file that passes what is written to it on as base64, encoding each piece as it
    arrives (in whole 3-byte groups, carrying the rest over to the next piece)."""

    def __init__(self, target: io.BytesIO | SpooledUpload) -> None:
        self._target = target
        self._carry = b""

    def write(self, data: bytes) -> int:
        joined = self._carry + bytes(data)
        whole = len(joined) - len(joined) % 3
        self._target.write(base64.b64encode(joined[:whole]))
        self._carry = joined[whole:]
        return len(data)

    def finish(self) -> None:
        """Write the padded last group."""
        self._target.write(base64.b64encode(self._carry))
        self._carry = b""


def decode_data_uri(uri: str) -> bytes:
    """The bytes of a base64 data: URI (a result some providers return inline)."""
    try:
        _, payload = uri.split(",", 1)
        return base64.b64decode(payload)
    except ValueError:
        raise ImageDecodeError("The provider returned a malformed data URI as the result.") from None


def decode_image(data: bytes, *, max_pixels: int = MAX_DECODED_PIXELS, source: str = "the result") -> np.ndarray:
    """Decode downloaded bytes to uint8 RGB, trusting only the bytes themselves (see decode_picture)."""
    return np.asarray(decode_picture(io.BytesIO(data), max_pixels=max_pixels, source=source))


def _opened_picture(file: BinaryIO, *, max_pixels: int, source: str) -> Image.Image:
    """An image file opened and checked from its header alone, none of its pixels decoded yet.

    The format is sniffed from the content (a URL's extension or a Content-Type header can lie),
    and the pixel count is checked before any pixel is decoded. `source` names the file in messages.
    """
    try:
        picture = Image.open(file)
    except Image.DecompressionBombError as error:
        raise ResultTooLargeError(f"{capitalised(source)} is too large to decode safely: {error}") from None
    except (OSError, ValueError):
        # Its bytes are not quoted: they may come from a host the pack was never meant to read.
        size = file.seek(0, io.SEEK_END)
        raise ImageDecodeError(f"{capitalised(source)} is not an image ({size} bytes in no image format).") from None
    if picture.format not in DECODABLE_FORMATS:
        raise ImageDecodeError(f"{capitalised(source)} is a {picture.format} file; expected PNG, JPEG or WebP.")
    if picture.width * picture.height > max_pixels:
        raise ResultTooLargeError(
            f"{capitalised(source)} claims {picture.width}x{picture.height} pixels, over the safety limit of "
            f"{max_pixels / MEGAPIXEL:g} MP; it was not decoded."
        )
    return picture


def decode_picture(file: BinaryIO, *, max_pixels: int = MAX_DECODED_PIXELS, source: str) -> Image.Image:
    """An image file decoded to an upright RGB Pillow image: checked from its header first (format,
    pixel count), EXIF orientation applied, alpha composited over white."""
    picture = _opened_picture(file, max_pixels=max_pixels, source=source)
    try:
        picture.load()
        ImageOps.exif_transpose(picture, in_place=True)  # not a copy: an upright image is left as it is
        return _rgb_picture(picture)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(f"{capitalised(source)} is damaged and cannot be decoded: {error}") from None


def capitalised(text: str) -> str:
    """A message's subject (a file's label) as the start of a sentence."""
    return text[:1].upper() + text[1:]


def _rgb_picture(picture: Image.Image) -> Image.Image:
    """The picture in 8-bit RGB: an RGB image as it is (not a copy), 16-bit grey by its high byte."""
    if picture.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(picture, dtype=np.uint32)
        return Image.fromarray((wide >> 8).clip(0, 255).astype(np.uint8)).convert("RGB")
    if picture.mode == "P" and "transparency" in picture.info:
        picture = picture.convert("RGBA")
    if picture.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", picture.size, (WHITE, WHITE, WHITE, 255))
        picture = Image.alpha_composite(background, picture.convert("RGBA"))
    return picture if picture.mode == "RGB" else picture.convert("RGB")
