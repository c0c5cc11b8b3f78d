"""Which of today's ComfyUI idioms the running ComfyUI has, found by looking, never by version.

ComfyUI 0.33.0 folds rarely changed inputs behind "show advanced" (`advanced=True`), hides nodes
used only inside expansions from the node library (`is_dev_only`), fetches a combo's options
from a route (`RemoteOptions`) and shows status text on a running node (`send_progress_text`);
0.3.64 has only some of them. The nodes ask here and keep today's layout where one is missing.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from comfy_api.latest import io
from server import PromptServer

HAS_ADVANCED = "advanced" in inspect.signature(io.Int.Input.__init__).parameters
HAS_DEV_ONLY = "is_dev_only" in {field.name for field in dataclasses.fields(io.Schema)}
HAS_REMOTE_OPTIONS = hasattr(io, "RemoteOptions") and "remote" in inspect.signature(io.Combo.Input.__init__).parameters
HAS_PROGRESS_TEXT = hasattr(PromptServer, "send_progress_text")


def advanced() -> dict[str, Any]:
    """Keyword arguments that fold an input behind "show advanced" where ComfyUI can."""
    return {"advanced": True} if HAS_ADVANCED else {}


def internal_node() -> dict[str, Any]:
    """Schema arguments that keep a node used only inside expansions out of the node library."""
    return {"is_dev_only": True} if HAS_DEV_ONLY else {}
