"""The pack's nodes as ComfyUI sees them: schemas and thin adapters over the node logic (..logic).

Imported only by ComfyUI (through the entry point in the top-level __init__.py), never by the
engine or the tests that run without ComfyUI. No node is marked `is_api_node`: that flag means a
comfy.org partner node, billed through a comfy.org account, and current frontends then hide Run
behind a comfy.org sign-in. These nodes bill the user's own provider key; the web extension shows
their price itself (from the engine's pricing, through the /flux2_flex/price route), in the
classic canvas and in the Vue node view alike.
"""

from __future__ import annotations

from typing import Any

from comfy_api.latest import io

from .features import advanced
from .native_nodes import native_node_output
from .recover_node import task_journal
from .running import NodeRun
from .server import current_user, local_model_roots, missing_key, result_cache, stored_gateway_names
from .validation import wired_inputs
from .schema import CATEGORY, LOCAL_MODEL, REFERENCES, ui_report
from ..engine.errors import FluxFlexError
from ..engine.local import OPTION_SPECS, LocalOptions, find_models, resolve_model
from ..engine.pricing import CostEstimate
from ..engine.providers import KEY_ENV_VARS, PROVIDER_NAMES
from ..engine.request import (
    ASPECT_PRESETS, GUIDANCE, HEIGHT, MAX_INPUT_IMAGES, MEGAPIXEL_CHOICES, OUTPUT_FORMAT_DEFAULT,
    OUTPUT_FORMAT_HELP, OUTPUT_FORMATS, PROMPT_HELP, PROMPT_UPSAMPLING_DEFAULT, PROMPT_UPSAMPLING_HELP,
    SAFETY_TOLERANCE, SEED, STEPS, UPLOAD_FORMAT_DEFAULT, UPLOAD_FORMAT_HELP, UPLOAD_FORMATS, WIDTH, NumberSpec,
)
from ..logic.node_runs import (
    COST_ESTIMATE_NODE, CUSTOM_SIZE, EDIT_NODE, GENERATE_NODE, LOCAL_MODEL_NODE, MAX_BATCH, REFERENCE_BATCH_NODE,
    LocalChoice, NodeSettings, check_settings, estimate_cost, run_settings,
)
from ..logic.native_flux2 import NativeModel
from ..logic.references import ReferenceSet, collect_references

NO_LOCAL_MODEL = "(no FLUX.2 folder in models/diffusers)"


def local_model_choices() -> list[str]:
    """FLUX.2 folders in ComfyUI's models/diffusers, listed afresh whenever the node list is built."""
    return [model.name for model in find_models(local_model_roots())] or [NO_LOCAL_MODEL]


def _int_input(spec: NumberSpec, **extra: Any) -> io.Int.Input:
    return io.Int.Input(spec.name, default=int(spec.default), min=int(spec.minimum), max=int(spec.maximum),
                        step=int(spec.step), tooltip=spec.tooltip(), **extra)


def settings_inputs(*, sends: bool = True) -> list:
    """The widgets Generate, Edit and CostEstimate share, built from the engine's specs.

    Rarely changed ones are folded behind "show advanced" where ComfyUI can; the web extension
    shows megapixels only with an aspect preset and width/height only with custom. Their names
    and order stay as earlier versions had them, so saved workflows and API prompts keep working.

    `sends` adds the result-cache switch, the key's name and the upload format, which mean nothing
    on CostEstimate (it sends nothing).
    Local runs take their options from the Local Model node instead, so a remote run shows no
    widget that does nothing for it.
    """
    use_cache = io.Boolean.Input(
        "use_cache", default=True, **advanced(),
        tooltip="On (default): exactly the same request (provider, settings, seed and input pixels) returns the "
        "stored image with no request and no cost, also after a restart. Off: always send.")
    key_name = io.String.Input(
        "key_name", default="", **advanced(),
        tooltip="Which stored key to use, by the name it was saved under in Settings > FLUX.2 Flex (personal, "
        "client, ...). Empty (default): the provider's default key. The workflow holds only this name; where it "
        "is unknown, the default key is used and the report says so.")
    upload_format = io.Combo.Input("upload_format", options=list(UPLOAD_FORMATS), default=UPLOAD_FORMAT_DEFAULT,
                                   tooltip=UPLOAD_FORMAT_HELP, **advanced())
    return [
        io.Combo.Input("provider", options=[*PROVIDER_NAMES, *stored_gateway_names()], default="bfl",
                       tooltip=f"Which API to call with your own key ({', '.join(KEY_ENV_VARS.values())}, or "
                       "stored in Settings > FLUX.2 Flex), or a gateway added there. Ignored when a Local Model node "
                       "is wired in."),
        io.String.Input("prompt", multiline=True, default="", tooltip=PROMPT_HELP),
        io.Combo.Input("aspect_ratio", options=[CUSTOM_SIZE, *ASPECT_PRESETS], default=CUSTOM_SIZE,
                       tooltip="An aspect ratio preset (with megapixels), or custom to use width and height."),
        io.Combo.Input("megapixels", options=list(MEGAPIXEL_CHOICES), default="1",
                       tooltip="Output size for an aspect ratio preset, never above the figure (billed per started MP)."),
        _int_input(WIDTH, display_mode=io.NumberDisplay.number),
        _int_input(HEIGHT, display_mode=io.NumberDisplay.number),
        _int_input(STEPS),
        io.Float.Input(GUIDANCE.name, default=GUIDANCE.default, min=GUIDANCE.minimum, max=GUIDANCE.maximum,
                       step=GUIDANCE.step, tooltip=GUIDANCE.tooltip()),
        _int_input(SEED, control_after_generate=True, display_mode=io.NumberDisplay.number),
        _int_input(SAFETY_TOLERANCE, **advanced()),
        io.Combo.Input("output_format", options=list(OUTPUT_FORMATS), default=OUTPUT_FORMAT_DEFAULT,
                       tooltip=OUTPUT_FORMAT_HELP, **advanced()),
        io.Boolean.Input("prompt_upsampling", default=PROMPT_UPSAMPLING_DEFAULT, tooltip=PROMPT_UPSAMPLING_HELP,
                         **advanced()),
        io.Int.Input("batch_size", default=1, min=1, max=MAX_BATCH, **advanced(),
                     tooltip=f"Images per run (1 to {MAX_BATCH}, default 1), sent at once; seeds count up from seed."),
        *([use_cache, key_name, upload_format] if sends else []),  # last, in the order they were added, so
        # workflows saved before them still line up
    ]


def image_node_output(node_id: str | None, settings: NodeSettings, **run_args: Any) -> io.NodeOutput:
    """Generate's and Edit's shared run: images, seed and report, plus the cost for the web extension."""
    run = NodeRun(node_id)
    result = run.run(lambda hooks: run_settings(settings, hooks, cache=result_cache(), journal=task_journal(),
                                                words=run.words, **run_args))
    run.done()
    return io.NodeOutput(result.images, result.seed, result.report, ui=ui_report(result.report))


def image_node_outputs() -> list:
    return [io.Image.Output(display_name="images"), io.Int.Output(display_name="seed"),
            io.String.Output(display_name="report")]


# dynprompt: where a Local Model (ComfyUI)'s loaders are, for the expansion into ComfyUI's FLUX.2 nodes
IMAGE_NODE_HIDDEN = [io.Hidden.unique_id, io.Hidden.dynprompt]


def image_node_extra_inputs() -> list:
    """The optional sockets Generate and Edit share, after their widgets."""
    return [
        REFERENCES.Input("references", optional=True, tooltip="Reference images from a Reference Batch node."),
        LOCAL_MODEL.Input("local_model", optional=True,
                          tooltip="Wire a FLUX.2 [flex] Local Model node here to run on your own GPU, free; the "
                          "provider is then not used. Local Model (ComfyUI) runs ComfyUI's own FLUX.2 files and "
                          "nodes; Local Model (diffusers) a diffusers folder. Several nodes can share one model."),
    ]


class _ValidatedNode(io.ComfyNode):
    """Shared validation: the engine's own message, at queue time, before anything is sent."""

    @classmethod
    def validate_inputs(cls, **values: Any) -> bool | str:
        return check_settings(NodeSettings.from_widgets(values)) or True

    @classmethod
    def fingerprint_inputs(cls, **values: Any) -> str:
        """Part of ComfyUI's key for reusing a node's outputs: on multi-user ComfyUI the user who
        queued the prompt, so one user's paid images are never handed to another."""
        return current_user() or ""


class _PaidNode(_ValidatedNode):
    """Generate and Edit: validation also asks for the provider's key unless a Local Model is wired
    in, so a missing key is a message at the provider widget before the run, not a failed run."""

    @classmethod
    def validate_inputs(cls, **values: Any) -> bool | str:
        settings = NodeSettings.from_widgets(values)
        problem = check_settings(settings)
        if problem is None and "local_model" not in wired_inputs(cls.hidden.unique_id):
            problem = missing_key(settings.provider, settings.key_name)
        return problem or True


class FluxFlexGenerate(_PaidNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=GENERATE_NODE,
            display_name="Generate (text to image)",
            category=CATEGORY,
            description="Text to image with FLUX.2 [flex] through your own provider key. Great at typography: put "
            "text in quotes. Optional references guide style and content. Outputs the images, the seed used and "
            "a report with the cost.",
            inputs=[*settings_inputs(), *image_node_extra_inputs()],
            outputs=image_node_outputs(),
            hidden=IMAGE_NODE_HIDDEN,
            enable_expand=True,  # with a Local Model (ComfyUI): a subgraph of ComfyUI's FLUX.2 nodes
        )

    @classmethod
    def execute(cls, references: ReferenceSet | None = None, local_model: LocalChoice | NativeModel | None = None,
                **values: Any) -> io.NodeOutput:
        settings = NodeSettings.from_widgets(values)
        if isinstance(local_model, NativeModel):
            return native_node_output(cls, settings, local_model, references=references)
        return image_node_output(cls.hidden.unique_id, settings, references=references, local=local_model)


class FluxFlexEdit(_PaidNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=EDIT_NODE,
            display_name="Edit image",
            category=CATEGORY,
            description="Edit an image with FLUX.2 [flex], optionally guided by reference images. The output keeps "
            "the input's size (rounded to 16, at most 4 MP) unless match_input_size is off. A batch of B images "
            "gives B edits.",
            inputs=[
                io.Image.Input("image", tooltip="The image(s) to edit; each frame of a batch is edited on its own."),
                io.Boolean.Input("match_input_size", default=True,
                                 tooltip="On (default): output the input image's size, rounded to multiples of 16 "
                                 "and capped at 4 MP. Off: use aspect_ratio/megapixels or width/height."),
                *settings_inputs(),
                *image_node_extra_inputs(),
            ],
            outputs=image_node_outputs(),
            hidden=IMAGE_NODE_HIDDEN,
            enable_expand=True,  # with a Local Model (ComfyUI): a subgraph of ComfyUI's FLUX.2 nodes
        )

    @classmethod
    def execute(cls, image, match_input_size: bool = True, references: ReferenceSet | None = None,
                local_model: LocalChoice | NativeModel | None = None, **values: Any) -> io.NodeOutput:
        settings = NodeSettings.from_widgets(values)
        if isinstance(local_model, NativeModel):
            return native_node_output(cls, settings, local_model, edit_image=image, references=references,
                                      match_input_size=match_input_size)
        return image_node_output(cls.hidden.unique_id, settings, edit_image=image, references=references,
                                 match_input_size=match_input_size, local=local_model)


def _reference_image_inputs() -> list:
    """Eight fixed optional sockets rather than an Autogrow group: Autogrow exists only in newer
    ComfyUI and names its sockets differently, so a shared workflow would not load on both."""
    tooltip = "An image (or a batch: each frame counts) to use as a reference. Images over 4 MP are downscaled."
    return [io.Image.Input(f"image_{i}", optional=True, tooltip=tooltip) for i in range(1, MAX_INPUT_IMAGES + 1)]


class FluxFlexReferenceBatch(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=REFERENCE_BATCH_NODE,
            display_name="Reference Batch",
            category=CATEGORY,
            description=f"Collects up to {MAX_INPUT_IMAGES} reference images of any sizes for Generate, Edit and "
            "Cost Estimate. Chain several: a Reference Batch can feed another. Refuses a 9th image rather than "
            "dropping one, and says when it downscales.",
            inputs=[REFERENCES.Input("references", optional=True,
                                     tooltip="References from another Reference Batch, kept first."),
                    *_reference_image_inputs()],
            outputs=[REFERENCES.Output(display_name="references"), io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(cls, references: ReferenceSet | None = None, **images: Any) -> io.NodeOutput:
        ordered = sorted(images.items(), key=lambda item: int(item[0].rsplit("_", 1)[-1]))
        collected = collect_references(ordered, references)
        return io.NodeOutput(collected, collected.summary(), ui=ui_report(collected.summary()))


class FluxFlexCostEstimate(_ValidatedNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=COST_ESTIMATE_NODE,
            display_name="Cost Estimate",
            category=CATEGORY,
            description="The price of a request before anything is sent, from megapixels in and out, with its "
            "breakdown. Needs no key. Wire the same settings, image and references as the Generate or Edit node. "
            "usd and credits are -1 for a provider whose price is not published (the breakdown says so).",
            inputs=[*settings_inputs(sends=False),
                    io.Image.Input("image", optional=True, tooltip="The image an Edit node would edit (optional)."),
                    io.Boolean.Input("match_input_size", default=True,
                                     tooltip="As on the Edit node: price the input image's size."),
                    REFERENCES.Input("references", optional=True, tooltip="The references the request would carry.")],
            outputs=[io.Float.Output(display_name="usd"), io.Float.Output(display_name="credits"),
                     io.String.Output(display_name="breakdown")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, image=None, match_input_size: bool = True, references: ReferenceSet | None = None,
                **values: Any) -> io.NodeOutput:
        estimate: CostEstimate = estimate_cost(NodeSettings.from_widgets(values), edit_image=image,
                                               references=references, match_input_size=match_input_size)
        text = estimate.as_text()
        return io.NodeOutput(estimate.usd if estimate.usd is not None else -1.0,
                             estimate.credits if estimate.credits is not None else -1.0, text, ui=ui_report(text))


class FluxFlexLocalModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=LOCAL_MODEL_NODE,
            display_name="Local Model (diffusers)",
            category=CATEGORY,
            description="Picks a FLUX.2 [dev] or [klein] model folder (diffusers format, in models/diffusers) and "
            "how to run it. Wire its output into Generate or Edit to run there on your own GPU, free of charge; "
            "nodes that share one Local Model share one loaded pipeline. Nothing is ever downloaded.",
            inputs=[
                io.Combo.Input("model", options=local_model_choices(),
                               tooltip="A FLUX.2 [dev] or [klein] folder in diffusers format inside "
                               "models/diffusers. Loaded from disk only, never downloaded."),
                *(io.Combo.Input(spec.name, options=list(spec.choices), default=spec.default, tooltip=spec.help)
                  for spec in OPTION_SPECS),
            ],
            outputs=[LOCAL_MODEL.Output(display_name="local_model")],
        )

    @classmethod
    def validate_inputs(cls, model: str, local_dtype: str, local_offload: str, local_quantization: str) -> bool | str:
        try:
            cls.choice(model, local_dtype, local_offload, local_quantization)
        except FluxFlexError as error:
            return str(error)
        return True

    @classmethod
    def execute(cls, model: str, local_dtype: str, local_offload: str, local_quantization: str) -> io.NodeOutput:
        return io.NodeOutput(cls.choice(model, local_dtype, local_offload, local_quantization))

    @staticmethod
    def choice(model: str, dtype: str, offload: str, quantization: str) -> LocalChoice:
        """The model folder (only a name inside models/diffusers) and validated options."""
        return LocalChoice(resolve_model(model, local_model_roots()), LocalOptions(dtype, offload, quantization).validate())
