"""Loading a FLUX.2 pipeline from disk and keeping one loaded between runs.

diffusers is imported here, inside functions, only when a local run is asked for: importing the
engine stays light for users of the remote providers. One pipeline is held at a time because
each is tens of gigabytes; loading another, or ComfyUI asking for memory (`free`), releases the
previous one first.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import FluxFlexError, InvalidRequestError
from .models import LocalModel, check_complete
from .options import LocalOptions, choose_device, choose_dtype, import_torch

if TYPE_CHECKING:
    import torch

INSTALL_HINT = (
    'The local provider needs diffusers: pip install "comfyui-flux2-flex[local]", or into ComfyUI\'s own '
    "Python: pip install diffusers transformers accelerate"
)
FOUR_BIT_COMPONENTS = ["transformer", "text_encoder"]  # the two large parts; the VAE is small and stays as is


@dataclass(frozen=True)
class LoadedPipeline:
    """A ready pipeline and the device its generator must use."""

    pipeline: Any
    device: torch.device
    dtype: torch.dtype


class PipelineCache:
    """Holds one loaded pipeline, keyed by (folder, dtype, offload mode, quantisation, device)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._loaded: LoadedPipeline | None = None
        self._lock = threading.Lock()
        self.loads = 0  # how many times a pipeline was read from disk: the tests count reloads

    def get(self, model: LocalModel, options: LocalOptions,
            on_load: Callable[[str], None] | None = None) -> LoadedPipeline:
        """The cached pipeline when the key matches; otherwise free the old one and load."""
        device = choose_device()
        dtype = choose_dtype(options.dtype, device)
        key = (model.path, dtype, options.offload, options.quantization, device.type)
        with self._lock:
            if self._key != key:
                self._release()
                if on_load is not None:
                    on_load(f"loading {model.name}")
                self._loaded = LoadedPipeline(load_pipeline(model, options, device, dtype), device, dtype)
                self._key = key
                self.loads += 1
            return self._loaded

    def free(self) -> None:
        """Drop the pipeline and return its memory (ComfyUI's Unload models, or memory pressure)."""
        with self._lock:
            self._release()

    def _release(self) -> None:
        if self._loaded is None:
            return  # nothing loaded: torch need not even be imported
        self._loaded, self._key = None, None
        gc.collect()  # offload hooks and modules reference each other: only a collection frees them
        torch = import_torch()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def import_diffusers() -> Any:
    try:
        import diffusers
    except ImportError:
        raise FluxFlexError(INSTALL_HINT) from None
    return diffusers


def load_pipeline(model: LocalModel, options: LocalOptions, device: torch.device, dtype: torch.dtype) -> Any:
    """Read the folder from disk only, then place it on the device as the offload option says."""
    diffusers = import_diffusers()
    if options.offload == "model" and device.type == "cpu":
        raise InvalidRequestError("local_offload", "model",
                                  "none or group on a machine without a GPU (model offload moves parts to a GPU)")
    check_complete(model)
    extra: dict[str, Any] = {}
    if options.quantization == "4-bit":
        extra["quantization_config"] = _four_bit_config(diffusers, dtype)
    torch = import_torch()
    try:
        pipeline = diffusers.DiffusionPipeline.from_pretrained(model.path, local_files_only=True, dtype=dtype, **extra)
        _place(pipeline, options.offload, device)
    except torch.OutOfMemoryError:
        gc.collect()
        raise out_of_memory(model, options, "loading") from None
    except Exception as error:  # diffusers/transformers/safetensors raise many types; all mean "cannot load"
        raise FluxFlexError(f"Could not load the local model {model.path}: {error}") from error
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _place(pipeline: Any, offload: str, device: torch.device) -> None:
    if offload == "model":
        pipeline.enable_model_cpu_offload(device=device)
    elif offload == "group":
        pipeline.enable_group_offload(onload_device=device, offload_device=import_torch().device("cpu"),
                                      offload_type="leaf_level", use_stream=device.type == "cuda")
    else:
        pipeline.to(device)  # bitsandbytes 4-bit parts are already on the GPU and stay as they are


def _four_bit_config(diffusers: Any, dtype: torch.dtype) -> Any:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise FluxFlexError(
            "local_quantization 4-bit needs bitsandbytes: pip install bitsandbytes (an NVIDIA GPU is required), "
            "or set local_quantization to none."
        ) from None
    return diffusers.quantizers.PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit",
        quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype},
        components_to_quantize=FOUR_BIT_COMPONENTS,
    )


def out_of_memory(model: LocalModel, options: LocalOptions, stage: str) -> FluxFlexError:
    """What to change when the GPU runs out: the next option down the memory ladder."""
    advice = {
        "none": "set local_offload to model (or group, which needs the least GPU memory)",
        "model": "set local_offload to group, or local_quantization to 4-bit",
        "group": "lower the output size or the number of references",
    }[options.offload]
    return FluxFlexError(f"Out of GPU memory {stage} {model.name} (offload {options.offload}, quantization "
                         f"{options.quantization}): {advice}.")


PIPELINES = PipelineCache()


def free() -> None:
    """Release the process-wide pipeline: the hook ComfyUI's unload calls."""
    PIPELINES.free()
