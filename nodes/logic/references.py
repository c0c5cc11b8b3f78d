"""Reference images collected by ReferenceBatch: chainable, capped, downscaled out loud.

A ReferenceSet is the value that travels on the FLUX2_FLEX_REFERENCES socket between nodes.
It holds clean uint8 pixels, so Generate, Edit and CostEstimate all see the same images and
the same sizes (the price depends on them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..engine.errors import InvalidRequestError
from ..engine.images import downscale_to_max_pixels
from ..engine.providers.base import ProviderLimits
from ..engine.request import InputImage
from .tensors import tensor_to_arrays

REFERENCE_LIMITS = ProviderLimits()  # the strictest provider (BFL): 8 images, each at most 4 MP


@dataclass(frozen=True)
class ReferenceSet:
    images: tuple[InputImage, ...] = ()
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        sizes = ", ".join(f"{image.width}x{image.height}" for image in self.images) or "none"
        return "\n".join((f"{len(self.images)} reference image(s): {sizes}", *self.notes))


def collect_references(
    inputs: Sequence[tuple[str, torch.Tensor | None]],
    previous: ReferenceSet | None = None,
    *,
    limit: int = REFERENCE_LIMITS.max_images,
    max_pixels: int = REFERENCE_LIMITS.max_input_pixels,
) -> ReferenceSet:
    """Append every frame of each named IMAGE input to `previous`, in order.

    Refuses to go past `limit` (naming the input that overflowed) rather than dropping images.
    """
    images = list(previous.images) if previous else []
    notes = list(previous.notes) if previous else []
    for name, tensor in inputs:
        if tensor is None:
            continue
        for index, frame in enumerate(tensor_to_arrays(tensor, name=name)):
            label = name if tensor.dim() == 3 or tensor.shape[0] == 1 else f"{name} (frame {index + 1})"
            if len(images) == limit:
                raise InvalidRequestError(
                    label, f"reference {len(images) + 1}",
                    f"at most {limit} reference images in all (earlier ReferenceBatch nodes included)",
                )
            shrunk = downscale_to_max_pixels(frame, max_pixels, label=label)
            images.append(InputImage(shrunk.pixels))
            if shrunk.note:
                notes.append(shrunk.note)
    return ReferenceSet(tuple(images), tuple(notes))
