"""Where the engine finds what its host application keeps: one explicit configuration step.

Outside ComfyUI (the command line, tests) nothing needs configuring: keys come from environment
variables (or the file FLUX_FLEX_KEYS_FILE names) and local models are given by path. ComfyUI's
entry point calls `configure` once, naming its user folder's key file and its model folders;
the engine reads them through `current()`. Nothing else changes this module's state.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Union

KeysFile = Union[Path, Callable[[], Union[Path, None]], None]


@dataclass(frozen=True)
class EngineSettings:
    """What the host application tells the engine."""

    # Keys saved through ComfyUI's settings dialog: the file, or a function giving the file of the
    # user whose prompt runs (multi-user ComfyUI keeps one per user).
    stored_keys_file: KeysFile = None
    local_model_roots: tuple[Path, ...] = ()  # folders holding diffusers model folders (models/diffusers)


_current = EngineSettings()
_lock = threading.Lock()


def configure(*, stored_keys_file: KeysFile = None, local_model_roots: tuple[Path, ...] = ()) -> EngineSettings:
    """Set the engine's settings for this process (ComfyUI's entry point calls this once)."""
    global _current
    with _lock:
        _current = replace(_current, stored_keys_file=stored_keys_file, local_model_roots=tuple(local_model_roots))
        return _current


def current() -> EngineSettings:
    """The settings `configure` set, or the defaults."""
    return _current
