"""What queue-time validation needs beyond a node's own values, and how its answer reaches the user.

ComfyUI validates a prompt inside the POST /prompt request, after its on-prompt handlers ran. Its
validate_inputs sees a linked input only as missing, so whether a Local Model is wired in (a
local run needs no key) is read from the prompt itself, which an on-prompt handler notes for
the rest of the request. The /prompt answer then has the pack's nodes' errors folded to one per
message, at the input the message names (see ..logic.validation_errors for why).
"""

from __future__ import annotations

import contextvars
import json

from aiohttp import web
from server import PromptServer

from ..logic.node_runs import NODE_IDS, RECOVER_NODE
from ..logic.validation_errors import fold_prompt_answer

_queued_prompt: contextvars.ContextVar[dict | None] = contextvars.ContextVar("flux2_flex_queued_prompt",
                                                                            default=None)


def queues_a_prompt(request: web.Request) -> bool:
    """Whether this is ComfyUI's POST /prompt, inside which a queued prompt is validated."""
    return request.method == "POST" and request.path.rstrip("/").endswith("/prompt")


def note_queued_prompt(json_data: dict) -> dict:
    """ComfyUI's on-prompt hook: remember the prompt being queued, for `wired_inputs`."""
    prompt = json_data.get("prompt")
    _queued_prompt.set(prompt if isinstance(prompt, dict) else None)
    return json_data


def wired_inputs(node_id: str | None) -> set[str]:
    """The inputs of this node that the prompt being validated links to another node's output."""
    node = (_queued_prompt.get() or {}).get(str(node_id))
    inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
    return {name for name, value in inputs.items() if isinstance(value, list) and len(value) == 2}


@web.middleware
async def fold_validation_errors(request: web.Request, handler):
    """POST /prompt: the pack's nodes' validation errors once each, at the input they name."""
    response = await handler(request)
    if not queues_a_prompt(request):
        return response
    if not isinstance(response, web.Response) or response.content_type != "application/json" or not response.body:
        return response
    try:
        answer = json.loads(response.body)
    except (TypeError, ValueError):
        return response
    if not isinstance(answer, dict) or not answer.get("node_errors"):
        return response
    return web.json_response(fold_prompt_answer(answer, {*NODE_IDS, RECOVER_NODE}), status=response.status)


def register_validation() -> None:
    server = PromptServer.instance
    server.add_on_prompt_handler(note_queued_prompt)
    server.app.middlewares.append(fold_validation_errors)
