"""FLUX.2 [flex] Recover paid task: the image of a task that was paid but not delivered.

A crash, a ComfyUI restart, a Cancel or a provider's hiccup can end a run after its task was
paid. The task stays in the pack's journal (in ComfyUI's user folder) and the log names it; this
node takes its id and puts the image into the graph, polling the provider, never paying again.
Rerunning the same Generate or Edit node resumes the task too; this node is for any other case.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from comfy_api.latest import io

from .running import comfy_hooks, run_interruptibly
from .schema import CATEGORY, ui_report
from .server import multi_user, pack_user_folder
from ..engine.durable import recover
from ..engine.errors import FluxFlexError
from ..engine.journal import TaskJournal
from ..engine.providers import make_provider
from ..logic.tensors import arrays_to_tensor

RECOVER_NODE = "FluxFlexRecoverTask"
MAX_LISTED = 10


def task_journal() -> TaskJournal:
    """The journal of paid tasks of whoever queued the running prompt (one per ComfyUI user on a
    multi-user ComfyUI; one for all on a single-user one), shared by every node."""
    return _journal_in(pack_user_folder() / "journal")


@functools.cache
def _journal_in(folder: Path) -> TaskJournal:
    return TaskJournal(folder)


def tooltip_summary() -> str:
    """The tooltip's list of undelivered tasks; a multi-user ComfyUI shows one node list to every
    user, so there it lists none (a user's tasks are named in their errors and the log)."""
    return "" if multi_user() else "\n" + undelivered_summary()


def undelivered_summary() -> str:
    """The newest paid tasks that did not deliver, one per line, for the tooltip and errors."""
    pending = task_journal().undelivered()[-MAX_LISTED:]
    if not pending:
        return "No paid task is waiting for delivery."
    return "Paid tasks not delivered (newest last):\n" + "\n".join(entry.describe() for entry in pending)


class FluxFlexRecoverTask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=RECOVER_NODE,
            display_name="FLUX.2 [flex] Recover paid task",
            category=CATEGORY,
            description="Gets the image of a task that was paid but not delivered (after a crash, a restart, a "
            "Cancel or a provider error), by its task id from the error message or the log. Polls the provider; "
            "pays nothing. Providers keep results for about an hour.",
            inputs=[io.String.Input("task_id", default="", tooltip="The task id the error or the log named."
                                    + tooltip_summary())],
            outputs=[io.Image.Output(display_name="image"), io.String.Output(display_name="report")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, task_id: str, **_: Any) -> io.NodeOutput:
        journal = task_journal()
        entry = journal.find(task_id.strip())
        if entry is None:
            raise FluxFlexError(f"No paid task {task_id.strip() or '(empty)'} in the journal. {undelivered_summary()}")
        hooks = comfy_hooks(cls.hidden.unique_id)
        result = run_interruptibly(lambda: recover(entry, make_provider(entry.provider), journal, hooks=hooks))
        report = result.report()
        return io.NodeOutput(arrays_to_tensor([result.pixels]), report, ui=ui_report(report))
