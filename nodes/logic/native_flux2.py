"""Generate and Edit on ComfyUI's own FLUX.2 nodes: the subgraph they expand into.

When the Local Model (ComfyUI) node is wired in, Generate and Edit run nothing themselves: they
return a node expansion of ComfyUI's native FLUX.2 nodes (the graph ComfyUI's own FLUX.2 templates
use), wired to the links of the user's MODEL, CLIP and VAE loaders. ComfyUI then loads, samples,
caches, previews, interrupts and frees memory as it does for its own workflows, LoRAs included.

The plan is built here with no ComfyUI import: the builder is passed in (ComfyUI's GraphBuilder at
run time, a recorder in tests), so how each setting maps is tested without ComfyUI.

The plan follows ComfyUI's own FLUX.2 templates (comfyui-workflow-templates 0.11, the
image_flux2*.json files), so the same model, prompt, seed, size and settings give the same image
as the template: the image to edit and every reference are scaled to about 1 MP both ways
(ImageScaleToTotalPixels, with the template's method) before encoding; on Edit with
match_input_size the output follows the scaled image to edit (768x512 in gives 1248x832, as the
template's GetImageSize -> EmptyFlux2LatentImage does); klein 9B KV runs on FluxKVCache. With
`template_defaults` (the Local Model (ComfyUI) node's setting, on by default) the template's steps
and guidance for the model replace the node's, and the report names the values used.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any, Protocol

import torch

from ..engine.errors import InvalidRequestError
from ..engine.request import MEGAPIXEL, SEED, SIZE_MULTIPLE, validate_request
from .node_runs import NodeSettings, check_settings_before_paying, edit_output_size, image_size
from .references import ReferenceSet

AUTO, DEV, KLEIN_DISTILLED, KLEIN_BASE, KLEIN_KV = "auto", "dev", "klein distilled", "klein base", "klein 9B KV"
MODEL_KINDS = (AUTO, DEV, KLEIN_DISTILLED, KLEIN_BASE, KLEIN_KV)
SAMPLER = "euler"  # the sampler ComfyUI's FLUX.2 templates use
SCALE_MEGAPIXELS = 1.0  # the templates' ImageScaleToTotalPixels: every input image to about 1 MP, both ways
REFERENCE_LATENTS_NODE = "FluxFlexReferenceLatents"
# ComfyUI's nodes the expansion uses; a ComfyUI without one of them has no native FLUX.2.
NATIVE_NODES = ("CLIPTextEncode", "FluxGuidance", "ReferenceLatent", "VAEEncode", "VAEDecode", "BasicGuider",
                "CFGGuider", "Flux2Scheduler", "KSamplerSelect", "RandomNoise", "EmptyFlux2LatentImage",
                "SamplerCustomAdvanced", "ImageFromBatch", "ImageScaleToTotalPixels", "ImageBatch", "FluxKVCache")
Link = list  # ComfyUI's link: [node id, output index]


class GraphNode(Protocol):
    def out(self, index: int) -> Link: ...


class Builder(Protocol):
    """The part of ComfyUI's comfy_execution.graph_utils.GraphBuilder the plan uses."""

    def node(self, class_type: str, id: str | None = None, **inputs: Any) -> GraphNode: ...


@dataclass(frozen=True)
class Template:
    """What ComfyUI's own FLUX.2 template for a model uses, read from comfyui-workflow-templates 0.11
    (templates/image_flux2*.json): its steps, its guidance (FluxGuidance for [dev], the CFGGuider's
    cfg for klein base; None where the template runs cfg 1), the method it scales input images with,
    and whether it patches the model with FluxKVCache."""

    name: str
    steps: int
    guidance: float | None
    scale_method: str
    kv_cache: bool = False


TEMPLATES = {
    DEV: Template("image_flux2", 20, 4.0, "lanczos"),
    KLEIN_DISTILLED: Template("image_flux2_klein_image_edit_4b_distilled", 4, None, "nearest-exact"),
    KLEIN_BASE: Template("image_flux2_klein_image_edit_4b_base", 20, 5.0, "nearest-exact"),
    KLEIN_KV: Template("image_flux2_klein_9b_kv_image_edit", 4, None, "lanczos", kv_cache=True),
}


def template_values() -> str:
    """Each model's template steps and guidance, for the node's tooltip."""
    return "; ".join(f"{kind}: {t.steps} steps" + ("" if t.guidance is None else f", guidance {t.guidance:g}")
                     for kind, t in TEMPLATES.items())


@dataclass(frozen=True)
class NativeModel:
    """What the Local Model (ComfyUI) node hands to Generate and Edit: the node whose MODEL, CLIP and
    VAE links the expansion uses (its id in the running prompt), which FLUX.2 it is and why, and
    whether the template's steps and guidance for it replace the node's."""

    node_id: str
    kind: str  # DEV, KLEIN_DISTILLED, KLEIN_BASE or KLEIN_KV
    reason: str
    template_defaults: bool = True

    @property
    def template(self) -> Template:
        return TEMPLATES[self.kind]

    def applied(self, settings: NodeSettings) -> tuple[NodeSettings, str]:
        """The settings this model runs with, and the report's line on the template's values."""
        template = self.template
        scaling = f"input images scaled to about {SCALE_MEGAPIXELS:g} MP with {template.scale_method}"
        if not self.template_defaults:
            guidance = "" if template.guidance is None else f", guidance {template.guidance:g}"
            return settings, (f"template_defaults off: the node's {settings.steps} steps and guidance "
                              f"{settings.guidance:g} are used (ComfyUI's {template.name} template: {template.steps} "
                              f"steps{guidance}); {scaling}, as the template does")
        guidance = settings.guidance if template.guidance is None else template.guidance
        applied = replace(settings, steps=template.steps, guidance=guidance)
        changed = f"steps {template.steps}" + ("" if template.guidance is None else f", guidance {guidance:g}")
        mine = f"the node's {settings.steps} steps" + ("" if template.guidance is None
                                                       else f" and guidance {settings.guidance:g}")
        return applied, (f"template defaults of ComfyUI's {template.name} template: {changed}, {scaling}"
                         + (", FluxKVCache on the model" if template.kv_cache else "")
                         + f" ({mine} not used: set template_defaults off on the Local Model (ComfyUI) node to "
                           "use them)")


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

    [dev] has a guidance input ComfyUI detects in the weights; distilled, base and KV klein have
    the same weights' layout, so only the file name (ComfyUI's own files say `base` or `kv`) tells
    them apart.
    """
    if requested != AUTO:
        return requested, f"model_kind {requested}, as set on the node"
    if guidance_embed:
        return DEV, "FLUX.2 [dev]: ComfyUI found a guidance input in the model"
    if file_name is None:
        return KLEIN_DISTILLED, ("klein; no model file name found upstream, so taken as distilled (set model_kind "
                                 "to klein base for a base model)")
    if re.search(r"(^|[-_. ])kv([-_. ]|$)", PurePath(file_name).name.lower()):
        return KLEIN_KV, f"klein 9B KV, from the file name {file_name}"
    if "base" in PurePath(file_name).name.lower():
        return KLEIN_BASE, f"klein base, from the file name {file_name}"
    return KLEIN_DISTILLED, f"klein distilled, from the file name {file_name} (no 'base' in it)"


def scaled_size(width: int, height: int) -> tuple[int, int]:
    """The size ComfyUI's ImageScaleToTotalPixels (megapixels 1, resolution_steps 1) gives an
    image, up or down: what the templates encode, and what their output size follows."""
    scale = math.sqrt(SCALE_MEGAPIXELS * MEGAPIXEL / (width * height))
    return round(width * scale), round(height * scale)


def decoded_size(width: int, height: int) -> tuple[int, int]:
    """The size of the image sampled on a latent of width x height: whole 16-pixel blocks."""
    return width // SIZE_MULTIPLE * SIZE_MULTIPLE, height // SIZE_MULTIPLE * SIZE_MULTIPLE


def template_edit_size(width: int, height: int) -> tuple[int, int]:
    """What Edit with match_input_size makes of a width x height image here, as the template."""
    return decoded_size(*scaled_size(width, height))


def edit_output_note(width: int, height: int) -> str:
    """The same, and why, in words."""
    scaled = scaled_size(width, height)
    out_width, out_height = template_edit_size(width, height)
    return (f"output {out_width}x{out_height}: the image to edit scaled to about {SCALE_MEGAPIXELS:g} MP "
            f"({scaled[0]}x{scaled[1]}, whole 16-pixel blocks), as ComfyUI's template makes it")


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
    settings, template_line = model.applied(settings)
    notes = list(references.notes) if references else []
    if edit_image is None:
        latent_size, frames = settings.output_size(), 0
    elif match_input_size:  # as the template: the output follows the scaled image to edit
        latent_size, frames = scaled_size(*image_size(edit_image)), _frames(edit_image)
    else:
        fitted = edit_output_size(settings, *image_size(edit_image), match_input_size)
        latent_size, frames = fitted.size, _frames(edit_image)
        notes.extend(fitted.notes)
    size = decoded_size(*latent_size)
    validate_request(settings.base_request(size=size), seed=SEED)
    last_seed = settings.seed + max(frames - 1, 0) * settings.batch_size  # each frame's RandomNoise counts up
    if last_seed > SEED.maximum:
        raise InvalidRequestError("seed", settings.seed, f"at most {SEED.maximum - last_seed + settings.seed} with "
                                  f"{frames} frames and batch_size {settings.batch_size} (seeds count up per frame)")
    width, height = latent_size
    diffusion = sources.model
    if model.template.kv_cache:
        diffusion = builder.node("FluxKVCache", model=diffusion).out(0)
    positive = builder.node("CLIPTextEncode", clip=sources.clip, text=settings.prompt).out(0)
    negative = None
    if model.kind == DEV:
        positive = builder.node("FluxGuidance", conditioning=positive, guidance=settings.guidance).out(0)
    elif model.kind == KLEIN_BASE:
        negative = builder.node("CLIPTextEncode", clip=sources.clip, text="").out(0)
    sigmas = builder.node("Flux2Scheduler", steps=settings.steps, width=width, height=height).out(0)
    sampler = builder.node("KSamplerSelect", sampler_name=SAMPLER).out(0)
    method = model.template.scale_method
    edit_latents = [_encode_edit_frame(builder, sources, frame, frames, method) for frame in range(frames)] or [None]
    has_references = references is not None and bool(references.images)
    decoded: list[Link] = []
    for index, edit_latent in enumerate(edit_latents):
        conditioned = [_with_references(builder, sources, side, edit_latent, has_references, method)
                       for side in (positive, negative) if side is not None]
        if negative is None:
            guider = builder.node("BasicGuider", model=diffusion, conditioning=conditioned[0])
        else:
            guider = builder.node("CFGGuider", model=diffusion, positive=conditioned[0], negative=conditioned[1],
                                  cfg=settings.guidance)
        noise = builder.node("RandomNoise", noise_seed=settings.seed + index * settings.batch_size)
        latent = builder.node("EmptyFlux2LatentImage", width=width, height=height, batch_size=settings.batch_size)
        sampled = builder.node("SamplerCustomAdvanced", noise=noise.out(0), guider=guider.out(0), sampler=sampler,
                               sigmas=sigmas, latent_image=latent.out(0))
        decoded.append(builder.node("VAEDecode", samples=sampled.out(0), vae=sources.vae).out(0))
    images = decoded[0]
    for frame_images in decoded[1:]:
        images = builder.node("ImageBatch", image1=images, image2=frame_images).out(0)
    if edit_image is not None and match_input_size:
        notes.append(edit_output_note(*image_size(edit_image)))
    return NativeRun(images, native_report(settings, model, size, edit_image, references,
                                           (template_line, *notes)))


def _frames(edit_image: torch.Tensor) -> int:
    return 1 if edit_image.dim() == 3 else int(edit_image.shape[0])


def _with_references(builder: Builder, sources: NativeSources, conditioning: Link, edit_latent: Link | None,
                     has_references: bool, method: str) -> Link:
    """A conditioning with the edit frame's latent, then the references' latents, in the remote order."""
    if edit_latent is not None:
        conditioning = builder.node("ReferenceLatent", conditioning=conditioning, latent=edit_latent).out(0)
    if has_references:
        conditioning = builder.node(REFERENCE_LATENTS_NODE, conditioning=conditioning, vae=sources.vae,
                                    references=sources.references, upscale_method=method).out(0)
    return conditioning


def _encode_edit_frame(builder: Builder, sources: NativeSources, frame: int, frames: int, method: str) -> Link:
    """One frame of the edit image as a latent, scaled to about 1 MP first as the template does."""
    pixels = sources.image
    if frames > 1:
        pixels = builder.node("ImageFromBatch", image=pixels, batch_index=frame, length=1).out(0)
    pixels = builder.node("ImageScaleToTotalPixels", image=pixels, upscale_method=method,
                          megapixels=SCALE_MEGAPIXELS, resolution_steps=1).out(0)
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
    frames = 0 if edit_image is None else _frames(edit_image)
    lines = [f"Ran on ComfyUI's own FLUX.2 nodes: {model.reason}. Local run: free, nothing was sent.",
             f"{width}x{height}, {settings.steps} steps -> Flux2Scheduler, sampler {SAMPLER}",
             guidance_line(settings, model.kind),
             f"seed {settings.seed} -> RandomNoise; batch_size {settings.batch_size} -> EmptyFlux2LatentImage"
             + (": the batch shares that one seed, so unlike remote runs image i is not reproduced alone by seed+i"
                if settings.batch_size > 1 else "")]
    method = model.template.scale_method
    if frames:
        encoded = scaled_size(*image_size(edit_image))
        lines.append(f"edit image -> VAEEncode + ReferenceLatent (the first reference), scaled to {encoded[0]}x"
                     f"{encoded[1]} ({method}) first"
                     + (f"; {frames} frames: {frames} edits, seeds {settings.seed} + frame x batch_size" if frames > 1
                        else ""))
    if references is not None and references.images:
        lines.append(f"{len(references.images)} reference(s) -> VAEEncode + ReferenceLatent, after the edit image; "
                     f"each scaled to about {SCALE_MEGAPIXELS:g} MP ({method}) first")
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
