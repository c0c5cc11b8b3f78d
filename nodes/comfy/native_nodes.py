"""Running Generate and Edit on the FLUX.2 files ComfyUI users already have, through ComfyUI's own nodes.

The Local Model (ComfyUI) node takes the MODEL, CLIP and VAE of ComfyUI's loaders (with any LoRA or
other model patch in between) and hands Generate and Edit a NativeModel; they then return a node
expansion of ComfyUI's FLUX.2 nodes wired to those loaders' links (planned in native_flux2.py).
Imported only by ComfyUI. A ComfyUI without native FLUX.2 (0.3.64) lists the node as needing it
and refuses it at validation; the diffusers Local Model node keeps working there.
"""

from __future__ import annotations

from typing import Any

import nodes as comfy_core  # ComfyUI's own nodes.py: this pack's `nodes` package is only imported relatively
import torch
from comfy_api.latest import io
from comfy_execution.graph_utils import GraphBuilder

from ..engine.errors import FluxFlexError
from ..logic.native_flux2 import (
    DEV, MODEL_KINDS, NATIVE_NODES, REFERENCE_LATENTS_NODE, SCALE_MEGAPIXELS, TEMPLATES, NativeModel, NativeSources,
    choose_kind, expand_native, template_values, upstream_model_file,
)
from .features import internal_node
from .schema import CATEGORY, LOCAL_MODEL, REFERENCES, ui_report
from ..logic.node_runs import NATIVE_MODEL_NODE, NodeSettings
from ..logic.references import ReferenceSet


def missing_native_nodes() -> list[str]:
    """ComfyUI's FLUX.2 nodes the expansion needs that this ComfyUI lacks (all of them before FLUX.2)."""
    return [name for name in (*NATIVE_NODES, "UNETLoader", "CLIPLoader", "VAELoader")
            if name not in comfy_core.NODE_CLASS_MAPPINGS]


def native_missing_message() -> str | None:
    missing = missing_native_nodes()
    if not missing:
        return None
    return (f"This ComfyUI has no native FLUX.2 support (missing {', '.join(missing)}): update ComfyUI to use "
            "its FLUX.2 files, or use the FLUX.2 [flex] Local Model (diffusers) node with a diffusers folder.")


class FluxFlexNativeModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        missing = native_missing_message()
        return io.Schema(
            node_id=NATIVE_MODEL_NODE,
            display_name="Local Model (ComfyUI)" + (" - needs native FLUX.2" if missing else ""),
            category=CATEGORY,
            description=(missing + " " if missing else "") + "Runs Generate and Edit on your own FLUX.2 [dev] or "
            "[klein] files through ComfyUI's own FLUX.2 nodes: wire ComfyUI's UNETLoader, CLIPLoader (type flux2) "
            "and VAELoader here (a LoRA may sit in between) and this node's output into Generate's or Edit's "
            "local_model. Free; ComfyUI's memory management, previews and cache apply.",
            inputs=[
                io.Model.Input("model", tooltip="A FLUX.2 [dev] or [klein] diffusion model from ComfyUI's loader."),
                io.Clip.Input("clip", tooltip="Its text encoder from CLIPLoader with type flux2."),
                io.Vae.Input("vae", tooltip="The FLUX.2 VAE (flux2-vae.safetensors)."),
                io.Combo.Input("model_kind", options=list(MODEL_KINDS), default=MODEL_KINDS[0],
                               tooltip="auto: [dev] when the model has a guidance input; otherwise klein, base when "
                               "the model's file name says base, else distilled. Set it where the name does not tell."),
                io.Boolean.Input("template_defaults", default=True,
                                 tooltip="Use the steps and guidance of ComfyUI's own FLUX.2 template for this model "
                                 f"({template_values()}) instead of Generate's or Edit's; the report names the values "
                                 "used. Off: the node's own values."),
            ],
            outputs=[LOCAL_MODEL.Output(display_name="local_model")],
            hidden=[io.Hidden.unique_id, io.Hidden.dynprompt],
        )

    @classmethod
    def validate_inputs(cls, **values: Any) -> bool | str:
        return native_missing_message() or True

    @classmethod
    def execute(cls, model: Any, clip: Any, vae: Any, model_kind: str, template_defaults: bool = True) -> io.NodeOutput:
        config = getattr(getattr(getattr(model, "model", None), "model_config", None), "unet_config", None) or {}
        if config.get("image_model") != "flux2":
            raise FluxFlexError(f"The MODEL wired into {NATIVE_MODEL_NODE} is not FLUX.2 (ComfyUI detected "
                                f"{config.get('image_model') or type(getattr(model, 'model', model)).__name__}). "
                                "Load a FLUX.2 [dev] or [klein] diffusion model.")
        prompt = cls.hidden.dynprompt
        own = prompt.get_node(cls.hidden.unique_id)["inputs"]
        file_name = upstream_model_file(prompt.get_node, own.get("model"))
        kind, reason = choose_kind(model_kind, guidance_embed=bool(config.get("guidance_embed")), file_name=file_name)
        return io.NodeOutput(NativeModel(cls.hidden.unique_id, kind, reason, template_defaults))


def native_node_output(node: type[io.ComfyNode], settings: NodeSettings, model: NativeModel, *,
                       edit_image: torch.Tensor | None = None, references: ReferenceSet | None = None,
                       match_input_size: bool = True) -> io.NodeOutput:
    """Generate's or Edit's outputs: the images of an expansion into ComfyUI's FLUX.2 nodes, the seed
    and the report (also shown on the node)."""
    prompt = node.hidden.dynprompt
    own = prompt.get_node(node.hidden.unique_id)["inputs"]
    loader = prompt.get_node(model.node_id)["inputs"]
    sources = NativeSources(model=loader["model"], clip=loader["clip"], vae=loader["vae"], image=own.get("image"),
                            references=own.get("references"))
    graph = GraphBuilder()
    run = expand_native(graph, settings, model, sources, edit_image=edit_image, references=references,
                        match_input_size=match_input_size)
    return io.NodeOutput(run.images, settings.seed, run.report, ui=ui_report(run.report), expand=graph.finalize())


class FluxFlexReferenceLatents(io.ComfyNode):
    """The references of a Reference Batch as reference latents: what ComfyUI's VAEEncode and
    ReferenceLatent do for one image, for each image the batch holds (its value carries pixels, not
    links, so it cannot be wired to them one by one)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=REFERENCE_LATENTS_NODE,
            display_name="Reference Latents",
            category=CATEGORY,
            **internal_node(),  # only Generate's and Edit's expansions use it: not in the node library
            description="Adds every image of a Reference Batch to a conditioning as a reference latent (ComfyUI's "
            "ImageScaleToTotalPixels to about 1 MP, VAEEncode and ReferenceLatent, in order, as ComfyUI's FLUX.2 "
            "templates do). Generate and Edit use it when a Local Model (ComfyUI) is wired in.",
            inputs=[io.Conditioning.Input("conditioning"), io.Vae.Input("vae"),
                    REFERENCES.Input("references", tooltip="Reference images from a Reference Batch node."),
                    io.Combo.Input("upscale_method", options=sorted({t.scale_method for t in TEMPLATES.values()}),
                                   default=TEMPLATES[DEV].scale_method,
                                   tooltip="How each image is scaled to about 1 MP: the model's template's method.")],
            outputs=[io.Conditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, conditioning: Any, vae: Any, references: ReferenceSet, upscale_method: str) -> io.NodeOutput:
        encode = comfy_core.VAEEncode()
        scale = comfy_core.NODE_CLASS_MAPPINGS["ImageScaleToTotalPixels"]
        reference_latent = comfy_core.NODE_CLASS_MAPPINGS["ReferenceLatent"]
        for image in references.images:
            pixels = torch.from_numpy(image.pixels).to(torch.float32).div_(255.0).unsqueeze(0)
            pixels = scale.execute(pixels, upscale_method, SCALE_MEGAPIXELS, 1).result[0]
            (latent,) = encode.encode(vae, pixels)
            conditioning = reference_latent.execute(conditioning, latent).result[0]
        return io.NodeOutput(conditioning)


NATIVE_NODE_CLASSES: list[type[io.ComfyNode]] = [FluxFlexNativeModel, FluxFlexReferenceLatents]
