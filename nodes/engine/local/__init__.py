"""The `local` provider: FLUX.2 [dev] or [klein] from a model folder, through diffusers.

diffusers and torch (the `local` extra) are imported only when a pipeline is loaded or run, so
remote-only users, and the command line, install nothing heavy. Models load from disk only (local_files_only): nothing is ever downloaded
at run time. One pipeline stays loaded between runs; ComfyUI frees it when it needs the memory.

What a caller uses: `find_models` / `resolve_model` to pick a folder, `OPTION_SPECS` for the
widgets, `engine.backend.backend_for` (or `prepare_local` then `generate_local_batch`) to run,
and `free` when memory is wanted back.
"""

import importlib
from typing import Any

LOCAL = "local"  # the provider name that picks a model folder on this machine
# Where each other name lives, loaded on first use: the command line names `LOCAL` and the options
# for its flags on every run, and must not load the runner, numpy and Pillow of local/backend.py,
# nor the model folders' code, for that.
_HOMES = {name: module for module, names in {
    "backend": ("generate_local", "generate_local_batch", "local_notes", "pipeline_arguments", "prepare_local"),
    "models": ("LocalModel", "check_complete", "find_models", "identify_model", "resolve_model"),
    "options": ("DTYPE", "OFFLOAD", "OPTION_SPECS", "QUANTIZE", "LocalOptions", "OptionSpec", "choose_device",
                "choose_dtype"),
    "pipeline_cache": ("INSTALL_HINT", "PIPELINES", "LoadedPipeline", "PipelineCache", "free"),
}.items() for name in names}
__all__ = sorted(["LOCAL", *_HOMES])


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
