"""How a pack node runs the engine inside ComfyUI: its progress bar, its Cancel button, and the
paid task named in the log when a run ends early. Shared by every node that runs the engine."""

from __future__ import annotations

import logging
from typing import Any, Callable

import comfy.model_management
import comfy.utils

from ..engine.errors import CancelledError, FluxFlexError
from ..engine.runner import RunHooks

LOG = logging.getLogger("comfyui_flux2_flex")
PROGRESS_STEPS = 100


def comfy_hooks(node_id: str | None) -> RunHooks:
    """ComfyUI's progress bar and Cancel button, as engine callbacks."""
    bar = comfy.utils.ProgressBar(PROGRESS_STEPS, node_id=node_id)

    def on_progress(fraction: float | None, status: str) -> None:
        if fraction is not None:
            bar.update_absolute(int(fraction * PROGRESS_STEPS), PROGRESS_STEPS)

    return RunHooks(on_progress=on_progress, is_cancelled=comfy.model_management.processing_interrupted)


def run_interruptibly(action: Callable[[], Any]) -> Any:
    """Turn the engine's CancelledError into ComfyUI's interruption, logging any task already paid."""
    try:
        return action()
    except CancelledError as cancelled:
        LOG.warning("%s", cancelled)
        raise comfy.model_management.InterruptProcessingException() from None
    except FluxFlexError as error:
        LOG.error("%s", error)  # a paid task's id, price and how to recover it reach the log too
        raise
