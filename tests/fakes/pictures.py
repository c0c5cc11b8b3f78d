"""Pictures the stand-ins send and read: rendered results, and the size of an uploaded image."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def render_result(width: int, height: int, seed: int, image_format: str) -> bytes:
    """A deterministic picture: a gradient tinted by the seed, so tests can tell results apart."""
    rng = np.random.default_rng(seed)
    tint = rng.integers(0, 256, size=3)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    pixels = np.broadcast_to((ramp * 0.5 + tint * 0.5), (height, width, 3)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format={"jpeg": "JPEG", "webp": "WEBP"}.get(image_format, "PNG"))
    return buffer.getvalue()


def encoded_image_size(encoded: str) -> tuple[int, int]:
    """Width and height of an uploaded image: raw base64 (BFL) or a data: URI (the resellers)."""
    payload = encoded.split(",", 1)[1] if encoded.startswith("data:") else encoded
    with Image.open(io.BytesIO(base64.b64decode(payload))) as picture:
        return picture.size
