"""The `local` provider: FLUX.2 [dev] or [klein] from a model folder, through diffusers.

diffusers and torch (the `local` extra) are imported only when a pipeline is loaded or run, so
remote-only users, and the command line, install nothing heavy. Models load from disk only (local_files_only): nothing is ever downloaded
at run time. One pipeline stays loaded between runs; ComfyUI frees it when it needs the memory.

What a caller uses: `find_models` / `resolve_model` to pick a folder, `OPTION_SPECS` for the
widgets, `engine.backend.backend_for` (or `prepare_local` then `generate_local_batch`) to run,
and `free` when memory is wanted back.
"""

from .backend import LOCAL, generate_local, generate_local_batch, local_notes, pipeline_arguments, prepare_local
from .models import LocalModel, check_complete, find_models, identify_model, resolve_model
from .options import DTYPE, OFFLOAD, OPTION_SPECS, QUANTIZE, LocalOptions, OptionSpec, choose_device, choose_dtype
from .pipeline_cache import INSTALL_HINT, PIPELINES, LoadedPipeline, PipelineCache, free

__all__ = [
    "DTYPE", "INSTALL_HINT", "LOCAL", "OFFLOAD", "OPTION_SPECS", "PIPELINES", "QUANTIZE", "LoadedPipeline",
    "LocalModel", "LocalOptions", "OptionSpec", "PipelineCache", "check_complete", "choose_device", "choose_dtype",
    "find_models", "free", "generate_local", "generate_local_batch", "identify_model", "local_notes",
    "pipeline_arguments", "prepare_local", "resolve_model",
]
