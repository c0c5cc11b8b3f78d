"""The options of a local run (precision, offloading, quantisation) and the device they run on.

Each option's choices, default and tooltip are written once here, with the memory each choice
needs, so the node, the CLI and the tests read the same text. torch is imported only when a
local run starts (`import_torch`): the engine and the command line work without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from ..errors import FluxFlexError, InvalidRequestError

if TYPE_CHECKING:
    import torch

TORCH_HINT = (
    'The local provider needs torch and diffusers: pip install "comfyui-flux2-flex[local]" (ComfyUI\'s own '
    "Python already has torch)"
)


@dataclass(frozen=True)
class OptionSpec:
    """One local-run option: its choices, default and what each choice costs in memory."""

    name: str
    choices: tuple[str, ...]
    default: str
    help: str


DTYPE = OptionSpec(
    "local_dtype", ("auto", "bfloat16", "float16", "float32"), "auto",
    "Precision of a local run. auto: bfloat16 on a GPU that supports it, float16 on other GPUs, float32 on the "
    "CPU. float32 doubles the memory of bfloat16.",
)
OFFLOAD = OptionSpec(
    "local_offload", ("none", "model", "group"), "none",
    "Where the model's weights live. none: all on the GPU, fastest (FLUX.2 dev in bf16 needs over 80 GB; klein 4B "
    "about 13 GB). model: each part moves to the GPU while it runs (dev about 62 GB; needs a GPU). group: layers "
    "stream from RAM as they run (dev about 8 GB of GPU memory plus 64 GB of RAM; slowest).",
)
QUANTIZE = OptionSpec(
    "local_quantization", ("none", "4-bit"), "none",
    "4-bit loads the transformer and the text encoder in 4-bit NF4 with bitsandbytes (pip install bitsandbytes): "
    "FLUX.2 dev with model offload then fits in about 20 GB, at some cost in detail.",
)
OPTION_SPECS: tuple[OptionSpec, ...] = (DTYPE, OFFLOAD, QUANTIZE)


@dataclass(frozen=True)
class LocalOptions:
    """The user's choice for each option; field order follows OPTION_SPECS."""

    dtype: str = DTYPE.default
    offload: str = OFFLOAD.default
    quantization: str = QUANTIZE.default

    def validate(self) -> "LocalOptions":
        for spec, value in zip(OPTION_SPECS, (self.dtype, self.offload, self.quantization)):
            if value not in spec.choices:
                raise InvalidRequestError(spec.name, value, f"one of {', '.join(spec.choices)}")
        return self


def import_torch() -> ModuleType:
    """torch, or a FluxFlexError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise FluxFlexError(TORCH_HINT) from None
    return torch


def choose_device() -> torch.device:
    """The accelerator if there is one (CUDA, then Apple's MPS), else the CPU."""
    torch = import_torch()
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def choose_dtype(option: str, device: torch.device) -> torch.dtype:
    """`auto` is the fastest precision the device runs well; anything else is taken as asked."""
    torch = import_torch()
    if option != "auto":
        return getattr(torch, option)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device.type == "mps" else torch.float32
