"""Pixels <-> bytes: uint8 RGB arrays encoded for upload, downloaded bytes decoded safely.

The engine works on uint8 [H, W, 3] numpy arrays only; ComfyUI's IMAGE tensors are converted
to and from them outside the engine (nodes/tensors.py), so the engine and the command line run
without torch.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageDecodeError, InvalidRequestError, ResultTooLargeError
from .request import MEGAPIXEL, downscaled_size

# Measured with bench/bench_throughput.py on photo-like 1 MP and 4 MP images: zlib level 1 takes
# about 0.95 of the default level 6's time for files 3% larger; level 0 (no compression) takes
# half the time but makes uploads 30% larger, which costs more than it saves on any uplink much
# slower than loopback. Level 1 is the fastest setting that does not cost upload time.
PNG_COMPRESS_LEVEL = 1
JPEG_QUALITY = 95
WEBP_QUALITY = 95
UPLOAD_FORMATS = ("png", "jpeg", "webp")
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


def encode_image(pixels: np.ndarray, image_format: str = "png") -> bytes:
    """Encode uint8 RGB pixels for upload; PNG is lossless, JPEG and WebP are smaller."""
    if image_format not in UPLOAD_FORMATS:
        raise InvalidRequestError("upload_format", image_format, f"one of {', '.join(UPLOAD_FORMATS)}")
    buffer = io.BytesIO()
    picture = Image.fromarray(pixels)
    if image_format == "png":
        picture.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif image_format == "jpeg":
        picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        picture.save(buffer, format="WEBP", quality=WEBP_QUALITY)
    return buffer.getvalue()


def encode_base64(pixels: np.ndarray, image_format: str = "png") -> str:
    """Raw base64 without a data: prefix, as BFL's examples send it."""
    return base64.b64encode(encode_image(pixels, image_format)).decode("ascii")


def encode_data_uri(pixels: np.ndarray, image_format: str = "png") -> str:
    """A data: URI, the form resellers accept where they expect an image URL."""
    mime = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}[image_format]
    return f"data:{mime};base64,{encode_base64(pixels, image_format)}"


def decode_data_uri(uri: str) -> bytes:
    """The bytes of a base64 data: URI (a result some providers return inline)."""
    try:
        _, payload = uri.split(",", 1)
        return base64.b64decode(payload)
    except ValueError:
        raise ImageDecodeError("The provider returned a malformed data URI as the result.") from None


def decode_image(data: bytes, *, max_pixels: int = MAX_DECODED_PIXELS, source: str = "the result") -> np.ndarray:
    """Decode downloaded bytes to uint8 RGB, trusting only the bytes themselves.

    The format is sniffed from the content (a URL's extension or a Content-Type header can lie),
    the pixel count is checked from the header before any pixel is decoded, EXIF orientation
    is applied and alpha is composited over white. `source` names the bytes in messages.
    """
    try:
        picture = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ResultTooLargeError(f"{_capital(source)} is too large to decode safely: {error}") from None
    except (OSError, ValueError):
        head = data[:16]
        raise ImageDecodeError(f"{_capital(source)} is not an image ({len(data)} bytes starting {head!r}).") from None
    if picture.format not in DECODABLE_FORMATS:
        raise ImageDecodeError(f"{_capital(source)} is a {picture.format} file; expected PNG, JPEG or WebP.")
    if picture.width * picture.height > max_pixels:
        raise ResultTooLargeError(
            f"{_capital(source)} claims {picture.width}x{picture.height} pixels, over the safety limit of "
            f"{max_pixels / MEGAPIXEL:g} MP; it was not decoded."
        )
    try:
        picture = ImageOps.exif_transpose(picture)
        return _picture_to_rgb(picture)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(f"{_capital(source)} is damaged and cannot be decoded: {error}") from None


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _picture_to_rgb(picture: Image.Image) -> np.ndarray:
    if picture.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(picture, dtype=np.uint32)
        return np.repeat((wide >> 8).clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if picture.mode == "P" and "transparency" in picture.info:
        picture = picture.convert("RGBA")
    if picture.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", picture.size, (WHITE, WHITE, WHITE, 255))
        picture = Image.alpha_composite(background, picture.convert("RGBA"))
    return np.asarray(picture.convert("RGB"))
