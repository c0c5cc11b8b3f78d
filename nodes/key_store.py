"""Provider keys pasted into ComfyUI's settings dialog, kept server-side and owner-only.

Keys never live in a workflow or in ComfyUI's settings JSON (both get shared). They are written
to one file in ComfyUI's user folder with mode 0600, atomically, and read by the engine through
`keys.use_stored_keys_file`. The HTTP routes only ever say *whether* a key is stored.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .engine.errors import InvalidRequestError
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
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-", suffix=".tmp")
        try:
            os.fchmod(descriptor, OWNER_ONLY)  # before any secret is written
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(stored, handle)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
