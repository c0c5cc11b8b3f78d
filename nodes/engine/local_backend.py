"""The `local` provider: FLUX.2 [dev] or [klein] from a model folder, through diffusers.

diffusers is an optional extra, imported only when a local run is asked for, so remote-only
users install nothing heavy. Models load from disk only (local_files_only): nothing is ever
downloaded at run time. One pipeline stays loaded between runs, keyed by folder, dtype, offload
mode and quantisation; ComfyUI frees it when it needs the memory.
"""

from __future__ import annotations

import gc
import json
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from PIL import Image

from .errors import CancelledError, FluxFlexError, InvalidRequestError
from .pricing import estimate
from .request import FlexRequest, MAX_INPUT_IMAGES, PROMPT_UPSAMPLING_DEFAULT, validate_request
from .runner import GenerationResult, PreparedRequest, RunHooks

LOCAL = "local"
PIPELINE_CLASSES = {"Flux2Pipeline": "dev", "Flux2KleinPipeline": "klein"}
INSTALL_HINT = ('The local provider needs diffusers: pip install "comfyui-flux2-flex[local]", or in ComfyUI\'s '
                "Python: pip install diffusers transformers accelerate")
MIN_REFERENCE_SIDE = 64
MAX_REFERENCE_ASPECT = 8
KLEIN_DISTILLED_STEPS = 4


@dataclass(frozen=True)
class OptionSpec:
    """One local-run option: its choices, default and what it costs in memory."""

    name: str
    choices: tuple[str, ...]
    default: str
    help: str


DTYPE = OptionSpec("local_dtype", ("auto", "bfloat16", "float16", "float32"), "auto",
                   "Precision of a local run: auto picks bfloat16 on a GPU that supports it, float16 on other GPUs "
                   "and float32 on the CPU.")
OFFLOAD = OptionSpec("local_offload", ("none", "model", "group"), "none",
                     "Where a local model's weights live. none: all on the GPU (FLUX.2 dev in bf16 needs over 80 GB; "
                     "klein 4B about 13 GB). model: each part moves to the GPU while it runs (dev about 62 GB; GPU "
                     "only). group: layers stream from RAM (dev about 8 GB of GPU memory plus 64 GB of RAM; slowest).")
QUANTIZE = OptionSpec("local_quantization", ("none", "4-bit"), "none",
                      "4-bit loads the transformer and text encoder with bitsandbytes (needs it installed and a GPU): "
                      "dev with model offload then fits in about 20 GB.")
OPTION_SPECS = (DTYPE, OFFLOAD, QUANTIZE)


@dataclass(frozen=True)
class LocalModel:
    """A FLUX.2 model folder in diffusers' layout, identified from its model_index.json."""

    path: Path
    kind: str  # "dev" or "klein"
    distilled: bool

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class LocalOptions:
    dtype: str = DTYPE.default
    offload: str = OFFLOAD.default
    quantization: str = QUANTIZE.default

    def validate(self) -> "LocalOptions":
        for spec, value in zip(OPTION_SPECS, (self.dtype, self.offload, self.quantization)):
            if value not in spec.choices:
                raise InvalidRequestError(spec.name, value, f"one of {', '.join(spec.choices)}")
        return self


def identify_model(path: Path) -> LocalModel:
    """Read a folder's model_index.json; refuse anything that is not FLUX.2 dev or klein."""
    index_file = path / "model_index.json"
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise FluxFlexError(
            f"{path} is not a diffusers model folder (no readable model_index.json). Point it at a FLUX.2 [dev] "
            "or [klein] folder in diffusers format."
        ) from None
    kind = PIPELINE_CLASSES.get(index.get("_class_name", ""))
    if kind is None:
        raise FluxFlexError(f"{path} holds a {index.get('_class_name')}, not FLUX.2 [dev] or [klein].")
    return LocalModel(path.resolve(), kind, bool(index.get("is_distilled", False)))


def find_models(roots: Iterable[Path]) -> list[LocalModel]:
    """FLUX.2 model folders directly inside the given roots (ComfyUI's models/diffusers paths)."""
    models = []
    for root in roots:
        for folder in sorted(p for p in Path(root).glob("*") if (p / "model_index.json").is_file()):
            try:
                models.append(identify_model(folder))
            except FluxFlexError:
                continue
    return models


def resolve_model(choice: str, roots: Iterable[Path]) -> LocalModel:
    """A model by folder path (CLI, tests) or by folder name inside the roots (ComfyUI's combo)."""
    if not choice:
        raise InvalidRequestError("local_model", choice, "a FLUX.2 [dev] or [klein] folder in models/diffusers")
    if Path(choice).is_dir():
        return identify_model(Path(choice))
    for model in find_models(roots):
        if model.name == choice:
            return model
    raise InvalidRequestError("local_model", choice, "the name of a FLUX.2 folder in models/diffusers, or a path")


def _diffusers() -> Any:
    try:
        import diffusers
    except ImportError:
        raise FluxFlexError(INSTALL_HINT) from None
    return diffusers


def choose_device_and_dtype(option: str) -> tuple[torch.device, torch.dtype]:
    if torch.cuda.is_available():
        device = torch.device("cuda")
        auto = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        device, auto = torch.device("cpu"), torch.float32
    return device, auto if option == "auto" else getattr(torch, option)


class PipelineCache:
    """Holds one loaded pipeline; loading another (or `free`) releases the previous one first."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._pipeline: Any = None
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, model: LocalModel, options: LocalOptions) -> tuple[Any, torch.device]:
        device, dtype = choose_device_and_dtype(options.dtype)
        key = (model.path, dtype, options.offload, options.quantization, device.type)
        with self._lock:
            if self._key != key:
                self._release()
                self._pipeline = _load(model, options, device, dtype)
                self._key = key
                self.loads += 1
            return self._pipeline, device

    def free(self) -> None:
        with self._lock:
            self._release()

    def _release(self) -> None:
        self._pipeline, self._key = None, None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _load(model: LocalModel, options: LocalOptions, device: torch.device, dtype: torch.dtype) -> Any:
    diffusers = _diffusers()
    extra: dict[str, Any] = {}
    if options.quantization == "4-bit":
        extra["quantization_config"] = _four_bit_config(diffusers, dtype)
    try:
        pipeline = diffusers.DiffusionPipeline.from_pretrained(model.path, local_files_only=True, dtype=dtype, **extra)
    except (OSError, ValueError) as error:
        raise FluxFlexError(f"Could not load the local model {model.path}: {error}. Is the folder complete?") from None
    if options.offload == "model":
        if device.type != "cuda":
            raise InvalidRequestError("local_offload", "model", "none or group on a machine without a GPU")
        pipeline.enable_model_cpu_offload()
    elif options.offload == "group":
        pipeline.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"),
                                      offload_type="leaf_level", use_stream=device.type == "cuda")
    elif options.quantization == "none":
        pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _four_bit_config(diffusers: Any, dtype: torch.dtype) -> Any:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise FluxFlexError("4-bit loading needs bitsandbytes: pip install bitsandbytes (GPU only).") from None
    return diffusers.quantizers.PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit",
        quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype},
        components_to_quantize=["transformer", "text_encoder"],
    )


PIPELINES = PipelineCache()


def prepare_local(request: FlexRequest, model: LocalModel, *, count: int = 1) -> PreparedRequest:
    """Validate for a local run, say which settings do not apply, and price it (free)."""
    validate_request(request, max_images=MAX_INPUT_IMAGES)
    for index, image in enumerate(request.images, start=1):
        short, long = sorted((image.width, image.height))
        if short < MIN_REFERENCE_SIDE or long > MAX_REFERENCE_ASPECT * short:
            raise InvalidRequestError(f"input image {index}", f"{image.width}x{image.height}",
                                      f"each side at least {MIN_REFERENCE_SIDE} px and at most "
                                      f"{MAX_REFERENCE_ASPECT}:1 for the local pipeline")
    return PreparedRequest(request, estimate(request, LOCAL, count=count), _notes(request, model))


def _notes(request: FlexRequest, model: LocalModel) -> tuple[str, ...]:
    notes = []
    if request.prompt_upsampling == PROMPT_UPSAMPLING_DEFAULT:
        notes.append("prompt upsampling is a provider service: the prompt was used as written")
    notes.append("safety_tolerance and output_format apply to remote providers only")
    if model.kind == "klein" and model.distilled:
        notes.append(f"{model.name} is a distilled klein model: it ignores guidance (run at 1.0) and works best "
                     f"at about {KLEIN_DISTILLED_STEPS} steps")
    return tuple(notes)


def generate_local(
    prepared: PreparedRequest, model: LocalModel, options: LocalOptions = LocalOptions(), *,
    hooks: RunHooks = RunHooks(), cache: PipelineCache = PIPELINES,
) -> GenerationResult:
    """Run the pipeline once and return the image as the remote path does (uint8 RGB)."""
    request = prepared.request
    pipeline, device = cache.get(model, options.validate())
    seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
    width, height = request.output_size()
    steps = request.steps

    def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
        if hooks.cancelled():
            raise CancelledError("Cancelled during a local run; nothing was billed.")
        hooks.progress((step + 1) / steps, f"step {step + 1}/{steps}")
        return tensors

    hooks.progress(0.0, "running locally")
    output = pipeline(
        prompt=request.prompt,
        image=[Image.fromarray(image.pixels) for image in request.images] or None,
        width=width, height=height, num_inference_steps=steps,
        guidance_scale=1.0 if model.kind == "klein" and model.distilled else request.guidance,
        generator=torch.Generator(device="cpu" if device.type != "cuda" else device).manual_seed(seed),
        output_type="np", callback_on_step_end=on_step_end,
    )
    pixels = (np.clip(output.images[0], 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return GenerationResult(pixels=pixels, provider=LOCAL, task_id=f"local:{model.name}", seed=seed,
                            estimate=prepared.estimate, reported_cost=None, input_mp=None, output_mp=None,
                            notes=prepared.notes)


def generate_local_batch(prepared: list[PreparedRequest], model: LocalModel, options: LocalOptions,
                         *, hooks: RunHooks = RunHooks()) -> list[GenerationResult]:
    """Local runs share one GPU, so a batch runs one image after another."""
    return [generate_local(item, model, options, hooks=hooks) for item in prepared]
