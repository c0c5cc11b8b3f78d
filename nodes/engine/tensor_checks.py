"""What an IMAGE tensor must hold before it is paid for: finite values on ComfyUI's 0..1 scale.

Clamping NaN, infinities or 0-255 values into 0..1 would send a black or white picture and bill
for it; such inputs are refused, naming the input, before anything is sent.
"""

from __future__ import annotations

import torch

from .errors import InvalidRequestError

# Resampling and colour nodes overshoot 0..1 a little; values past this are on another scale.
SCALE_TOLERANCE = 1.0


def check_image_values(image: torch.Tensor, *, name: str) -> None:
    """Raise InvalidRequestError for an integer tensor, a non-finite value or 0-255 values."""
    if not (image.is_floating_point()):
        raise InvalidRequestError(name, f"a {image.dtype} tensor",
                                  "an IMAGE of floats from 0 to 1 (divide 0-255 values by 255)")
    if not bool(torch.isfinite(image).all()):
        raise InvalidRequestError(name, "NaN or infinite values", "finite values from 0 to 1 in an IMAGE")
    low, high = float(image.min()), float(image.max())
    if high > 1.0 + SCALE_TOLERANCE or low < -SCALE_TOLERANCE:
        raise InvalidRequestError(name, f"values from {low:g} to {high:g}",
                                  "an IMAGE from 0 to 1 (0-255 values must be divided by 255)")
