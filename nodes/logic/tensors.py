"""ComfyUI IMAGE tensors <-> the engine's uint8 RGB arrays.

ComfyUI's IMAGE is a float tensor [B, H, W, C] in 0..1. Users wire in anything: a single
[H, W, C] frame, grayscale or RGBA, slight overshoots of 0..1, half precision, non-contiguous
views. All of that is normalised here to uint8 RGB once, so providers only ever see clean pixels.
What cannot be normalised without changing the picture (NaN, infinities, integer or 0-255
values, which clamping would turn black or white and still bill for) is refused, naming the
input, before anything is paid.
This lives outside the engine because only the nodes hold tensors: the engine and the
command line then need no torch.
"""

from __future__ import annotations

import numpy as np
import torch

from ..engine.errors import InvalidRequestError

# Resampling and colour nodes overshoot 0..1 a little; values past this are on another scale.
SCALE_TOLERANCE = 1.0


def tensor_to_arrays(image: torch.Tensor, *, name: str = "image") -> list[np.ndarray]:
    """Turn an IMAGE tensor (batch or single frame) into uint8 [H, W, 3] arrays, one per frame."""
    if not isinstance(image, torch.Tensor):
        raise InvalidRequestError(name, type(image).__name__, "an IMAGE tensor")
    frames = image
    if frames.dim() == 3:
        frames = frames.unsqueeze(0)
    if frames.dim() != 4 or frames.shape[-1] not in (1, 2, 3, 4):
        raise InvalidRequestError(
            name, tuple(image.shape), "an IMAGE of shape [batch, height, width, 1|3|4 channels]"
        )
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise InvalidRequestError(name, tuple(image.shape), "a non-empty image")
    check_image_values(frames, name=name)
    unit = frames.detach().to(device="cpu", dtype=torch.float32).clamp_(0.0, 1.0)
    rgb = _to_rgb(unit)
    as_bytes = (rgb * 255.0).round_().to(torch.uint8).contiguous().numpy()
    return [np.ascontiguousarray(frame) for frame in as_bytes]


def check_image_values(image: torch.Tensor, *, name: str) -> None:
    """Raise InvalidRequestError for an integer tensor, a non-finite value or 0-255 values."""
    if not image.is_floating_point():
        raise InvalidRequestError(name, f"a {image.dtype} tensor",
                                  "an IMAGE of floats from 0 to 1 (divide 0-255 values by 255)")
    if not bool(torch.isfinite(image).all()):
        raise InvalidRequestError(name, "NaN or infinite values", "finite values from 0 to 1 in an IMAGE")
    low, high = float(image.min()), float(image.max())
    if high > 1.0 + SCALE_TOLERANCE or low < -SCALE_TOLERANCE:
        raise InvalidRequestError(name, f"values from {low:g} to {high:g}",
                                  "an IMAGE from 0 to 1 (0-255 values must be divided by 255)")


def _to_rgb(frames: torch.Tensor) -> torch.Tensor:
    """Grayscale is repeated; alpha is composited over white so transparent areas are defined."""
    channels = frames.shape[-1]
    if channels in (2, 4):
        colour, alpha = frames[..., : channels - 1], frames[..., channels - 1 :]
        frames = colour * alpha + (1.0 - alpha)
    if frames.shape[-1] == 1:
        frames = frames.expand(*frames.shape[:-1], 3)
    return frames


def arrays_to_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """Stack uint8 [H, W, 3] frames into one IMAGE tensor; all must share one size."""
    sizes = {frame.shape for frame in frames}
    if len(sizes) != 1:
        listed = ", ".join(f"{s[1]}x{s[0]}" for s in sorted(sizes))
        raise InvalidRequestError("batch", listed, "images of one size to form an IMAGE batch")
    stacked = torch.from_numpy(np.stack(frames))
    return stacked.to(torch.float32).div_(255.0)
