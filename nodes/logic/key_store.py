"""Provider keys pasted into ComfyUI's settings dialog, kept server-side and owner-only.

Keys never live in a workflow or in ComfyUI's settings JSON (both get shared). They are written
to one file per ComfyUI user with mode 0600, atomically, and read by the engine from the file
`engine.settings.configure` names. Several keys per provider can be stored under names (personal,
client); a workflow holds only the name. The HTTP routes only ever say *which* names are stored.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..engine.errors import InvalidRequestError
from ..engine.files import write_atomically
from ..engine.keys import (
    DEFAULT_KEY_NAME, KEYS_FORMAT_VERSION, StoredKeys, is_default_name, is_legacy_keys_file, read_stored_keys,
)
from ..engine.redaction import MIN_SECRET_LENGTH, register_secret

KEYS_FILE_NAME = "keys.json"
OWNER_ONLY = 0o600
MAX_KEY_LENGTH = 512
KEY_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
KEY_NAME_RULE = "up to 40 letters, digits, '.', '_' or '-', starting with a letter or digit (empty: the default key)"


def normalize_key_name(name: str) -> str:
    """The stored name for what a user typed: empty means the provider's default key."""
    name = name.strip()
    if is_default_name(name):
        return DEFAULT_KEY_NAME
    if not KEY_NAME_PATTERN.fullmatch(name):
        raise InvalidRequestError("key_name", name, KEY_NAME_RULE)
    return name


class KeyStore:
    """A JSON file {provider: {name: key}} that only its owner can read."""

    def __init__(self, path: Path, providers: tuple[str, ...]) -> None:
        self.path = path
        self.providers = providers

    def names(self) -> dict[str, list[str]]:
        """The names of the keys stored per provider; the keys themselves are never returned."""
        stored = read_stored_keys(self.path)
        return {provider: sorted(stored.get(provider, {})) for provider in self.providers}

    def save(self, provider: str, key: str, name: str = "") -> str:
        """Store or, with an empty key, forget one named key; returns the name used."""
        if provider not in self.providers:
            raise InvalidRequestError("provider", provider, f"one of {', '.join(self.providers)}")
        name = normalize_key_name(name)
        key = key.strip()
        if key and (not MIN_SECRET_LENGTH <= len(key) <= MAX_KEY_LENGTH or any(ch.isspace() for ch in key)):
            raise InvalidRequestError(
                "key", "(hidden)", f"a single token of {MIN_SECRET_LENGTH} to {MAX_KEY_LENGTH} characters")
        stored = read_stored_keys(self.path)
        named = stored.setdefault(provider, {})
        if key:
            register_secret(key)
            named[name] = key
        else:
            named.pop(name, None)
        self._write({provider: keys for provider, keys in stored.items() if keys})
        return name

    def migrate(self) -> bool:
        """Rewrite a key file of the first format ({provider: key}) as default keys; True if it did."""
        if not is_legacy_keys_file(self.path):
            return False
        self._write(read_stored_keys(self.path))
        return True

    def all_keys(self) -> list[str]:
        """Every stored key, for the redaction of log lines; never sent anywhere."""
        return [key for named in read_stored_keys(self.path).values() for key in named.values()]

    def _write(self, stored: StoredKeys) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, json.dumps({"version": KEYS_FORMAT_VERSION, "keys": stored}).encode("utf-8"),
                         mode=OWNER_ONLY)
