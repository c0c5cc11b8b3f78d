"""Generate and Edit on ComfyUI's own FLUX.2 nodes: the subgraph they expand into.

When the Local Model (ComfyUI) node is wired in, Generate and Edit run nothing themselves: they
return a node expansion of ComfyUI's native FLUX.2 nodes (the graph ComfyUI's own FLUX.2 templates
use), wired to the links of the user's MODEL, CLIP and VAE loaders. ComfyUI then loads, samples,
caches, previews, interrupts and frees memory as it does for its own workflows, LoRAs included.

The plan is built here with no ComfyUI import: the builder is passed in (ComfyUI's GraphBuilder at
run time, a recorder in tests), so how each setting maps is tested without ComfyUI. Sizes come from
the same node_runs functions as remote runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Protocol

import torch

from ..engine.local.backend import REFERENCE_RESIZE_PIXELS
from ..engine.request import downscaled_size, validate_request
from .node_runs import NodeSettings, check_settings_before_paying, edit_output_size, image_size
from .references import ReferenceSet

AUTO, DEV, KLEIN_DISTILLED, KLEIN_BASE = "auto", "dev", "klein distilled", "klein base"
MODEL_KINDS = (AUTO, DEV, KLEIN_DISTILLED, KLEIN_BASE)
SAMPLER = "euler"  # the sampler ComfyUI's FLUX.2 templates use
DOWNSCALE_METHOD = "area"
REFERENCE_LATENTS_NODE = "FluxFlexReferenceLatents"
# ComfyUI's nodes the expansion uses; a ComfyUI without one of them has no native FLUX.2.
NATIVE_NODES = ("CLIPTextEncode", "FluxGuidance", "ReferenceLatent", "VAEEncode", "VAEDecode", "BasicGuider",
                "CFGGuider", "Flux2Scheduler", "KSamplerSelect", "RandomNoise", "EmptyFlux2LatentImage",
                "SamplerCustomAdvanced", "ImageFromBatch", "ImageScale", "ImageBatch")
Link = list  # ComfyUI's link: [node id, output index]


class GraphNode(Protocol):
    def out(self, index: int) -> Link: ...


class Builder(Protocol):
    """The part of ComfyUI's comfy_execution.graph_utils.GraphBuilder the plan uses."""

    def node(self, class_type: str, id: str | None = None, **inputs: Any) -> GraphNode: ...


@dataclass(frozen=True)
class NativeModel:
    """What the Local Model (ComfyUI) node hands to Generate and Edit: the node whose MODEL, CLIP and
    VAE links the expansion uses (its id in the running prompt), which FLUX.2 it is and why."""

    node_id: str
    kind: str  # DEV, KLEIN_DISTILLED or KLEIN_BASE
    reason: str


@dataclass(frozen=True)
class NativeSources:
    """Links into the running prompt: the loader's MODEL, CLIP, VAE, and Edit's image."""

    model: Link
    clip: Link
    vae: Link
    image: Link | None = None
    references: Link | None = None


@dataclass(frozen=True)
class NativeRun:
    images: Link
    report: str


def choose_kind(requested: str, *, guidance_embed: bool, file_name: str | None) -> tuple[str, str]:
    """The FLUX.2 variant to run and how that was decided.

    [dev] has a guidance input ComfyUI detects in the weights; distilled and base klein have the
    same weights' layout, so only the file name (ComfyUI's own files say `base`) tells them apart.
    """
    if requested != AUTO:
        return requested, f"model_kind {requested}, as set on the node"
    if guidance_embed:
        return DEV, "FLUX.2 [dev]: ComfyUI found a guidance input in the model"
    if file_name is None:
        return KLEIN_DISTILLED, ("klein; no model file name found upstream, so taken as distilled (set model_kind "
                                 "to klein base for a base model)")
    if "base" in PurePath(file_name).name.lower():
        return KLEIN_BASE, f"klein base, from the file name {file_name}"
    return KLEIN_DISTILLED, f"klein distilled, from the file name {file_name} (no 'base' in it)"


def encode_size(width: int, height: int) -> tuple[int, int]:
    """The size an edit image or reference is encoded at: at most about 1 MP, as the diffusers
    pipeline resizes it, so local runs see the same inputs on both paths."""
    return downscaled_size(width, height, REFERENCE_RESIZE_PIXELS)


def expand_native(
    builder: Builder,
    settings: NodeSettings,
    model: NativeModel,
    sources: NativeSources,
    *,
    edit_image: torch.Tensor | None = None,
    references: ReferenceSet | None = None,
    match_input_size: bool = True,
) -> NativeRun:
    """Add the FLUX.2 subgraph for the node's settings to `builder`; return its images and the report.

    One sampling chain per edit frame (each frame is its own edit, as remotely), each sampling a
    latent batch of batch_size from one RandomNoise seed. Reference latents follow the remote order:
    the edit image first, then the references.
    """
    check_settings_before_paying(settings)
    notes = list(references.notes) if references else []
    if edit_image is None:
        size, frames = settings.output_size(), 0
    else:
        fitted = edit_output_size(settings, *image_size(edit_image), match_input_size)
        size, frames = fitted.size, 1 if edit_image.dim() == 3 else int(edit_image.shape[0])
        notes.extend(fitted.notes)
    validate_request(settings.base_request(size=size))
    width, height = size
    positive = builder.node("CLIPTextEncode", clip=sources.clip, text=settings.prompt).out(0)
    negative = None
    if model.kind == DEV:
        positive = builder.node("FluxGuidance", conditioning=positive, guidance=settings.guidance).out(0)
    elif model.kind == KLEIN_BASE:
        negative = builder.node("CLIPTextEncode", clip=sources.clip, text="").out(0)
    sigmas = builder.node("Flux2Scheduler", steps=settings.steps, width=width, height=height).out(0)
    sampler = builder.node("KSamplerSelect", sampler_name=SAMPLER).out(0)
    edit_latents = [_encode_edit_frame(builder, sources, edit_image, frame, frames) for frame in range(frames)] or [None]
    has_references = references is not None and bool(references.images)
    decoded: list[Link] = []
    for index, edit_latent in enumerate(edit_latents):
        conditioned = [_with_references(builder, sources, side, edit_latent, has_references)
                       for side in (positive, negative) if side is not None]
        if negative is None:
            guider = builder.node("BasicGuider", model=sources.model, conditioning=conditioned[0])
        else:
            guider = builder.node("CFGGuider", model=sources.model, positive=conditioned[0], negative=conditioned[1],
                                  cfg=settings.guidance)
        noise = builder.node("RandomNoise", noise_seed=settings.seed + index * settings.batch_size)
        latent = builder.node("EmptyFlux2LatentImage", width=width, height=height, batch_size=settings.batch_size)
        sampled = builder.node("SamplerCustomAdvanced", noise=noise.out(0), guider=guider.out(0), sampler=sampler,
                               sigmas=sigmas, latent_image=latent.out(0))
        decoded.append(builder.node("VAEDecode", samples=sampled.out(0), vae=sources.vae).out(0))
    images = decoded[0]
    for frame_images in decoded[1:]:
        images = builder.node("ImageBatch", image1=images, image2=frame_images).out(0)
    return NativeRun(images, native_report(settings, model, size, edit_image, references, tuple(notes)))


def _with_references(builder: Builder, sources: NativeSources, conditioning: Link, edit_latent: Link | None,
                     has_references: bool) -> Link:
    """A conditioning with the edit frame's latent, then the references' latents, in the remote order."""
    if edit_latent is not None:
        conditioning = builder.node("ReferenceLatent", conditioning=conditioning, latent=edit_latent).out(0)
    if has_references:
        conditioning = builder.node(REFERENCE_LATENTS_NODE, conditioning=conditioning, vae=sources.vae,
                                    references=sources.references).out(0)
    return conditioning


def _encode_edit_frame(builder: Builder, sources: NativeSources, edit_image: torch.Tensor, frame: int,
                       frames: int) -> Link:
    """One frame of the edit image as a latent, downscaled first where it is over about 1 MP."""
    pixels = sources.image
    if frames > 1:
        pixels = builder.node("ImageFromBatch", image=pixels, batch_index=frame, length=1).out(0)
    width, height = image_size(edit_image)
    target = encode_size(width, height)
    if target != (width, height):
        pixels = builder.node("ImageScale", image=pixels, upscale_method=DOWNSCALE_METHOD, width=target[0],
                              height=target[1], crop="disabled").out(0)
    return builder.node("VAEEncode", pixels=pixels, vae=sources.vae).out(0)


def guidance_line(settings: NodeSettings, kind: str) -> str:
    if kind == DEV:
        return f"guidance {settings.guidance:g} -> FluxGuidance, BasicGuider (as ComfyUI's FLUX.2 [dev] template)"
    if kind == KLEIN_BASE:
        return (f"guidance {settings.guidance:g} -> CFGGuider cfg {settings.guidance:g} with an empty negative "
                "prompt (as ComfyUI's klein base template)")
    return (f"guidance {settings.guidance:g} ignored: a distilled klein runs without guidance (BasicGuider, the same "
            "as ComfyUI's template at cfg 1); it works best at about 4 steps")


def native_report(settings: NodeSettings, model: NativeModel, size: tuple[int, int], edit_image: torch.Tensor | None,
                  references: ReferenceSet | None, notes: tuple[str, ...]) -> str:
    """What ran, how each setting was mapped onto ComfyUI's nodes, and what does not apply."""
    width, height = size
    frames = 0 if edit_image is None else (1 if edit_image.dim() == 3 else int(edit_image.shape[0]))
    lines = [f"Ran on ComfyUI's own FLUX.2 nodes: {model.reason}. Local run: free, nothing was sent.",
             f"{width}x{height}, {settings.steps} steps -> Flux2Scheduler, sampler {SAMPLER}",
             guidance_line(settings, model.kind),
             f"seed {settings.seed} -> RandomNoise; batch_size {settings.batch_size} -> EmptyFlux2LatentImage"
             + (": the batch shares that one seed, so unlike remote runs image i is not reproduced alone by seed+i"
                if settings.batch_size > 1 else "")]
    if frames:
        encoded = encode_size(*image_size(edit_image))
        scaled = f", downscaled to {encoded[0]}x{encoded[1]} first" if encoded != image_size(edit_image) else ""
        lines.append(f"edit image -> VAEEncode + ReferenceLatent (the first reference){scaled}"
                     + (f"; {frames} frames: {frames} edits, seeds {settings.seed} + frame x batch_size" if frames > 1
                        else ""))
    if references is not None and references.images:
        big = sum(1 for image in references.images if encode_size(image.width, image.height) != (image.width, image.height))
        lines.append(f"{len(references.images)} reference(s) -> VAEEncode + ReferenceLatent, after the edit image"
                     + (f"; {big} over 1 MP downscaled to about 1 MP first" if big else ""))
    lines.append(f"not used on this path: provider {settings.provider}, safety_tolerance, output_format "
                 f"{settings.output_format}, prompt_upsampling (the prompt was used as written), use_cache "
                 "(ComfyUI's own cache applies), key_name, upload_format (images go to the VAE uncompressed)")
    lines.extend(notes)
    return "\n".join(lines)


def upstream_model_file(get_node: Any, link: Any, *, max_hops: int = 32) -> str | None:
    """The model file a MODEL link was loaded from, following model patches (LoRA loaders and the
    like, whose input is also called `model`) up to a loader's unet_name or ckpt_name widget."""
    for _ in range(max_hops):
        if not isinstance(link, list) or not link:
            return None
        inputs = (get_node(str(link[0])) or {}).get("inputs", {})
        for widget in ("unet_name", "ckpt_name"):
            if isinstance(inputs.get(widget), str):
                return inputs[widget]
        link = inputs.get("model")
    return None
