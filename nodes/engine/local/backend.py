"""One local generation: FlexRequest in, GenerationResult out, as the remote path returns it.

The request maps field by field onto the diffusers call; settings that mean nothing locally
(moderation, the download format, the provider's prompt rewrite) are named in the notes rather
than dropped silently. Progress is reported per denoising step, and the same step callback
checks for cancellation, so an interrupt stops the run within one step.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from typing import TYPE_CHECKING

import numpy as np

from ..errors import CancelledError, FluxFlexError, InvalidRequestError
from ..prepared import GenerationResult, PreparedRequest, RunHooks
from ..pricing import estimate
from ..request import MAX_INPUT_IMAGES, MEGAPIXEL, FlexRequest, validate_request
from . import LOCAL
from .models import LocalModel
from .options import LocalOptions, import_torch
from .pipeline_cache import PIPELINES, PipelineCache, out_of_memory

MIN_REFERENCE_SIDE = 64  # the pipelines' own limits on a reference image
MAX_REFERENCE_ASPECT = 8
REFERENCE_RESIZE_PIXELS = MEGAPIXEL  # larger references are resized by the pipeline to about this
KLEIN_DISTILLED_STEPS = 4
SEED_RANGE = 2**32
CANCELLED = "Cancelled during a local run; nothing was billed."

if TYPE_CHECKING:
    import torch


def prepare_local(request: FlexRequest, model: LocalModel, *, count: int = 1) -> PreparedRequest:
    """Validate for a local run, say which settings do not apply, and price it (free)."""
    validate_request(request, max_images=MAX_INPUT_IMAGES)
    for index, image in enumerate(request.images, start=1):
        short, long = sorted((image.width, image.height))
        if short < MIN_REFERENCE_SIDE or long > MAX_REFERENCE_ASPECT * short:
            raise InvalidRequestError(
                f"input image {index}", f"{image.width}x{image.height}",
                f"each side at least {MIN_REFERENCE_SIDE} px and at most {MAX_REFERENCE_ASPECT}:1 "
                "for the local pipeline",
            )
    return PreparedRequest(request, estimate(request, LOCAL, count=count), local_notes(request, model))


def local_notes(request: FlexRequest, model: LocalModel) -> tuple[str, ...]:
    """Every setting the local pipeline does not honour as a remote provider would."""
    notes = []
    if request.prompt_upsampling:
        notes.append("prompt upsampling is a provider service: the prompt was used as written")
    notes.append(f"safety_tolerance ({request.safety_tolerance}) and output_format ({request.output_format}) have no "
                 "effect locally: there is no moderation, and the image is passed on uncompressed")
    for index, image in enumerate(request.images, start=1):
        if image.width * image.height > REFERENCE_RESIZE_PIXELS:
            notes.append(f"input image {index} ({image.width}x{image.height}) is resized by the pipeline to about 1 MP")
    if model.kind == "klein" and model.distilled:
        notes.append(f"{model.name} is a distilled klein model: it ignores guidance (run at 1.0) and works best at "
                     f"about {KLEIN_DISTILLED_STEPS} steps")
    return tuple(notes)


def generate_local(
    prepared: PreparedRequest, model: LocalModel, options: LocalOptions = LocalOptions(), *,
    hooks: RunHooks = RunHooks(), cache: PipelineCache = PIPELINES,
) -> GenerationResult:
    """Run the pipeline once and return uint8 RGB pixels [H, W, 3], as the remote path does."""
    started = time.monotonic()
    request = prepared.request
    loaded = cache.get(model, options.validate(), on_load=lambda status: hooks.progress(0.0, status))
    if hooks.cancelled():  # loading a large model takes minutes: the user may have given up meanwhile
        raise CancelledError(CANCELLED)
    seed = request.seed if request.seed is not None else secrets.randbelow(SEED_RANGE)
    hooks.progress(0.0, f"running {model.name} locally")
    torch = import_torch()
    try:
        output = loaded.pipeline(**pipeline_arguments(request, model, seed, loaded.device, hooks))
    except torch.OutOfMemoryError:
        raise out_of_memory(model, options, "generating with") from None
    images = np.asarray(output.images)
    if images.ndim != 4 or images.shape[0] != 1 or images.shape[-1] != 3:
        raise FluxFlexError(f"The local pipeline returned images of shape {images.shape}, not [1, H, W, 3].")
    pixels = (np.clip(images[0], 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return GenerationResult(
        image=pixels, provider=LOCAL, task_id=f"local:{model.name}", seed=seed, estimate=prepared.estimate,
        reported_cost=None, input_mp=None, output_mp=None, notes=prepared.notes,
        seconds=time.monotonic() - started,
    )


def pipeline_arguments(request: FlexRequest, model: LocalModel, seed: int, device: torch.device,
                       hooks: RunHooks) -> dict[str, Any]:
    """The diffusers call for a request: each FlexRequest field mapped to its pipeline argument."""
    width, height = request.output_size()
    steps = request.steps

    def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
        if hooks.cancelled():
            raise CancelledError(CANCELLED)
        hooks.progress((step + 1) / steps, f"step {step + 1}/{steps}")
        return tensors

    return dict(
        prompt=request.prompt,
        image=[image.picture() for image in request.images] or None,
        width=width,
        height=height,
        num_inference_steps=steps,
        guidance_scale=1.0 if model.kind == "klein" and model.distilled else request.guidance,
        num_images_per_prompt=1,
        generator=import_torch().Generator(device=device).manual_seed(seed),
        output_type="np",
        callback_on_step_end=on_step_end,
    )


def generate_local_batch(prepared: list[PreparedRequest], model: LocalModel, options: LocalOptions = LocalOptions(),
                         *, hooks: RunHooks = RunHooks(), cache: PipelineCache = PIPELINES) -> list[GenerationResult]:
    """Local runs share one GPU, so a batch runs one image after another on one loaded pipeline."""
    return [generate_local(item, model, options, hooks=hooks, cache=cache) for item in prepared]
