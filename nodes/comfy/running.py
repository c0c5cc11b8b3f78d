"""How a pack node runs the engine inside ComfyUI: its progress bar, the status text on the node,
its Cancel button, and what the node says when a run ends early. Shared by every node that runs
the engine."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import comfy.model_management
import comfy.utils
from server import PromptServer

from .features import HAS_PROGRESS_TEXT
from .server import running_words
from ..engine.errors import CancelledError, FluxFlexError
from ..engine.runner import RunHooks
from ..logic.run_status import RunStatus

LOG = logging.getLogger("comfyui_flux2_flex")
PROGRESS_STEPS = 100
STATUS_EVERY_S = 0.5  # the node's status text is sent at most this often (and whenever a task is paid)


class NodeRunError(RuntimeError):
    """A run that failed, as the user reads it: ComfyUI shows an exception's module path in front
    of its message, so the engine's error reaches the node as this plain type, with its words."""

    __module__ = "builtins"  # ComfyUI then names the type alone ("NodeRunError"), not the pack's file path


class NodeRun:
    """One node's run: ComfyUI's progress bar and Cancel button as engine callbacks, and the status
    text on the node (where ComfyUI can show one) while it runs and after it ended early."""

    def __init__(self, node_id: str | None) -> None:
        self.node_id = node_id
        self.words = running_words()  # in the language of the tab that queued the run
        self.status = RunStatus(self.words)
        self._bar = comfy.utils.ProgressBar(PROGRESS_STEPS, node_id=node_id)
        self._sent = 0.0
        self._lock = threading.Lock()

    def hooks(self) -> RunHooks:
        def on_progress(fraction: float | None, status: str) -> None:
            if fraction is not None:
                self._bar.update_absolute(int(fraction * PROGRESS_STEPS), PROGRESS_STEPS)
            self.status.progress(fraction, status)
            self.say(self.status.text())

        def on_submitted(task: Any) -> None:
            self.status.submitted(task.task_id)
            self.say(self.status.text(), now=True)

        return RunHooks(on_progress=on_progress, is_cancelled=comfy.model_management.processing_interrupted,
                        on_submitted=on_submitted)

    def say(self, text: str, *, now: bool = False) -> None:
        """Show `text` on the node (at most every STATUS_EVERY_S unless `now`)."""
        if not HAS_PROGRESS_TEXT or self.node_id is None:
            return
        with self._lock:
            if not now and time.monotonic() - self._sent < STATUS_EVERY_S:
                return
            self._sent = time.monotonic()
        PromptServer.instance.send_progress_text(text, self.node_id)

    def done(self) -> None:
        """The run delivered: the status text says so (the report itself is on the node's panel)."""
        self.say(self.status.finished(), now=True)

    def run(self, action: Callable[[RunHooks], Any]) -> Any:
        """Run `action` with this run's hooks. The engine's CancelledError becomes ComfyUI's
        interruption; any other engine error a NodeRunError with the engine's words; either way the
        node and the log say which task was paid and how to collect it."""
        self.say(self.status.text(), now=True)
        try:
            return action(self.hooks())
        except CancelledError as cancelled:
            LOG.warning("%s", cancelled)
            self.say(self.status.ended_early(cancelled=True), now=True)
            raise comfy.model_management.InterruptProcessingException() from None
        except FluxFlexError as error:
            LOG.error("%s", error)  # a paid task's id, price and how to recover it reach the log too
            if error.task_id:
                self.status.submitted(error.task_id)
            ended = self.status.ended_early(cancelled=False)
            self.say(ended, now=True)
            message = str(error) if not self.status.paid else f"{error}\n\n{ended}"
            raise NodeRunError(message) from None
