"""Recover paid task: the image of a task that was paid but not delivered.

A crash, a ComfyUI restart, a Cancel or a provider's hiccup can end a run after its task was
paid. The task stays in the pack's journal (in ComfyUI's user folder) and the node that paid for
it names it; this node lists such tasks, live (its list is fetched from a route whenever the
menu opens, not frozen at page load), polls the one picked and shows its image on the node,
never paying again. Rerunning the same Generate or Edit node resumes the task too.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from aiohttp import web
from comfy_api.latest import io, ui
from comfy_execution.graph_utils import ExecutionBlocker
from server import PromptServer

from .features import HAS_REMOTE_OPTIONS
from .running import NodeRun
from .schema import CATEGORY, ui_report
from .server import UnknownUserError, pack_user_folder, request_user
from ..engine.durable import recover
from ..engine.journal import JournalEntry, TaskJournal
from ..engine.providers import make_provider
from ..logic.node_runs import RECOVER_NODE
from ..logic.receipt import receipt
from ..logic.tensors import arrays_to_tensor

TASKS_ROUTE = "/flux2_flex/paid_tasks"
MAX_LISTED = 20
NONE_WAITING = "(no paid task is waiting)"
NONE_WAITING_REPORT = "No paid task is waiting for delivery: every paid image has been delivered."


def task_journal(user: str | None = None) -> TaskJournal:
    """The journal of paid tasks of whoever queued the running prompt (or `user`): one per ComfyUI
    user on a multi-user ComfyUI, one for all on a single-user one, shared by every node."""
    return _journal_in(pack_user_folder(user) / "journal")


@functools.cache
def _journal_in(folder: Path) -> TaskJournal:
    return TaskJournal(folder)


def waiting_tasks(user: str | None = None) -> list[str]:
    """The ids of the newest undelivered tasks, newest first; the placeholder when none is waiting.
    Plain ids, so a workflow or API prompt that names a task by its id (as earlier versions' text
    input did) still finds it. A multi-user ComfyUI lists a user's tasks only to that user (never
    in the node list that every user shares)."""
    try:
        pending = task_journal(user).undelivered()[-MAX_LISTED:]
    except UnknownUserError:
        pending = []
    return [entry.task_id for entry in reversed(pending)] or [NONE_WAITING]


def _task_input() -> io.Input:
    tooltip = ("A paid task whose image was not delivered (the failed or cancelled node names it). The list is "
               "read afresh whenever you open it.")
    if HAS_REMOTE_OPTIONS:
        return io.Combo.Input("task_id", options=waiting_tasks(), tooltip=tooltip,
                              remote=io.RemoteOptions(route=TASKS_ROUTE, refresh_button=True, refresh=2000))
    return io.String.Input("task_id", default="", tooltip="The task id the failed or cancelled node named.")


class FluxFlexRecoverTask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=RECOVER_NODE,
            display_name="Recover paid task",
            category=CATEGORY,
            description="Gets the image of a task that was paid but not delivered (after a crash, a restart, a "
            "Cancel or a provider error) and shows it on the node. Polls the provider; pays nothing. Providers "
            "keep results for about an hour.",
            inputs=[_task_input()],
            outputs=[io.Image.Output(display_name="image"), io.String.Output(display_name="report")],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def fingerprint_inputs(cls, task_id: str, **_: Any) -> str:
        """Asked again on every run while none is waiting, so a task paid since is found."""
        return float("nan") if task_id == NONE_WAITING else task_id  # type: ignore[return-value]

    @classmethod
    def execute(cls, task_id: str, **_: Any) -> io.NodeOutput:
        wanted = task_id.strip()
        journal = task_journal()
        entry = journal.find(wanted) if wanted and task_id != NONE_WAITING else None
        if entry is None:
            report = NONE_WAITING_REPORT if task_id == NONE_WAITING or not wanted else \
                f"No paid task {wanted} in the journal. {waiting_summary()}"
            return io.NodeOutput(ExecutionBlocker(None), report, ui=ui_report(report))
        run = NodeRun(cls.hidden.unique_id)
        result = run.run(lambda hooks: recover(entry, make_provider(entry.provider), journal, hooks=hooks))
        run.done()
        image, report = arrays_to_tensor([result.pixels]), receipt(result, run.words)
        return io.NodeOutput(image, report, ui={**ui.PreviewImage(image, cls=cls).as_dict(), **ui_report(report)})


def waiting_summary() -> str:
    """The waiting tasks, one line each (provider, when, price), for a node that named another."""
    pending = task_journal().undelivered()[-MAX_LISTED:]
    return "Waiting:\n" + "\n".join(entry.describe() for entry in pending) if pending else NONE_WAITING_REPORT


def register_tasks_route() -> None:
    """The list the task menu fetches: the asking user's undelivered tasks, as menu entries."""

    @PromptServer.instance.routes.get(TASKS_ROUTE)
    async def get_paid_tasks(request: web.Request) -> web.Response:
        try:
            return web.json_response(waiting_tasks(request_user(request)))
        except UnknownUserError:
            return web.json_response([NONE_WAITING])
