"""Provider keys pasted into ComfyUI's settings dialog, kept server-side and owner-only.

Keys never live in a workflow or in ComfyUI's settings JSON (both get shared). They are written
to one file in ComfyUI's user folder with mode 0600, atomically, and read by the engine from the
file `engine.settings.configure` names. The HTTP routes only ever say *whether* a key is stored.
"""

from __future__ import annotations

import json
from pathlib import Path

from .engine.errors import InvalidRequestError
from .engine.files import write_atomically
from .engine.keys import read_stored_keys

KEYS_FILE_NAME = "keys.json"
OWNER_ONLY = 0o600
MAX_KEY_LENGTH = 512


class KeyStore:
    """A JSON file {provider: key} that only its owner can read."""

    def __init__(self, path: Path, providers: tuple[str, ...]) -> None:
        self.path = path
        self.providers = providers

    def status(self) -> dict[str, bool]:
        """Which providers have a stored key; the keys themselves are never returned."""
        stored = read_stored_keys(self.path)
        return {provider: provider in stored for provider in self.providers}

    def save(self, provider: str, key: str) -> None:
        """Store or, with an empty key, forget the key for one provider."""
        if provider not in self.providers:
            raise InvalidRequestError("provider", provider, f"one of {', '.join(self.providers)}")
        key = key.strip()
        if len(key) > MAX_KEY_LENGTH or any(ch.isspace() for ch in key):
            raise InvalidRequestError("key", "(hidden)", f"a single token of at most {MAX_KEY_LENGTH} characters")
        stored = read_stored_keys(self.path)
        if key:
            stored[provider] = key
        else:
            stored.pop(provider, None)
        self._write(stored)

    def _write(self, stored: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, json.dumps(stored).encode("utf-8"), mode=OWNER_ONLY)
