"""API keys: where they come from and where they may go.

A key is wrapped in `ApiKey` as soon as it is read, so an accidental print, log line, repr or
f-string shows a mask instead of the secret, and registered for redaction, so a provider echoing
it back never gets it into a message. `KeyScope` decides which URLs a key may be sent to: the
configured API host, or a provider's own domain over https; never a result-delivery host.

Stored keys are named, so one user can keep several accounts of a provider (personal, client):
the file holds {"version": 2, "keys": {provider: {name: key}}}; the environment variable or the
key named `default` is the provider's default key. The first format, {provider: key}, is read
as the default keys.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from .errors import NOT_BILLED, AuthenticationError, MissingApiKeyError, UnsafeUrlError
from .redaction import register_secret
from .settings import current as current_settings

STORED_KEYS_FILE_ENV = "FLUX_FLEX_KEYS_FILE"
DEFAULT_KEY_NAME = "default"
KEYS_FORMAT_VERSION = 2
StoredKeys = dict[str, dict[str, str]]  # provider -> key name -> key


class ApiKey:
    """A secret that refuses to be shown: only `reveal()` returns the raw value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value.strip()
        register_secret(self._value)

    def reveal(self) -> str:
        return self._value

    def one_way_tag(self) -> str:
        """A short name for the account this key opens, for file names shared between processes:
        a one-way hash, so neither the name nor the file reveals the key."""
        return hashlib.blake2b(self._value.encode(), digest_size=12, person=b"flux2flex-acct").hexdigest()

    def __repr__(self) -> str:
        return "ApiKey(****)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> tuple:
        raise TypeError("API keys are not picklable, so they cannot be written to disk by accident")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def read_stored_keys(path: Path | None) -> StoredKeys:
    """Keys saved through ComfyUI's settings dialog, {provider: {name: key}}; no file means none."""
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    if data.get("version") != KEYS_FORMAT_VERSION:  # the first format: {provider: key}
        data = {"keys": {provider: {DEFAULT_KEY_NAME: key} for provider, key in data.items()}}
    stored: StoredKeys = {}
    for provider, named in (data.get("keys") or {}).items():
        if isinstance(named, dict):
            keys = {str(name): value.strip() for name, value in named.items() if isinstance(value, str) and value.strip()}
            if keys:
                stored[str(provider)] = keys
    return stored


def is_legacy_keys_file(path: Path) -> bool:
    """Whether the file still has the first format, which the key store rewrites on start."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and bool(data) and data.get("version") != KEYS_FORMAT_VERSION


def stored_keys_path() -> Path | None:
    """The stored-keys file: the one ComfyUI configured (for multi-user ComfyUI, the file of the
    user whose prompt runs), else FLUX_FLEX_KEYS_FILE if set."""
    configured_file = current_settings().stored_keys_file
    if callable(configured_file):
        return configured_file()
    if configured_file is not None:
        return configured_file
    configured = os.environ.get(STORED_KEYS_FILE_ENV)
    return Path(configured) if configured else None


def is_default_name(name: str) -> bool:
    return name.strip() in ("", DEFAULT_KEY_NAME)


def stored_setting(
    name: str,
    env_var: str,
    *,
    environ: Mapping[str, str] | None = None,
    stored: StoredKeys | None = None,
) -> str:
    """A per-account value that is not a key (Foundry's endpoint) from its environment variable,
    else from its default entry stored through ComfyUI's settings dialog; "" when neither has it.

    The environment wins so a user can override a stored value for one session.
    """
    env = os.environ if environ is None else environ
    entries = (read_stored_keys(stored_keys_path()) if stored is None else stored).get(name, {})
    return env.get(env_var, "").strip() or entries.get(DEFAULT_KEY_NAME, "")


def resolve_api_key(
    provider: str,
    env_var: str,
    *,
    name: str = "",
    environ: Mapping[str, str] | None = None,
    stored: StoredKeys | None = None,
) -> ApiKey:
    """The provider's key: the stored key called `name` when there is one, else the default key.

    The default key comes from the provider's usual environment variable, else from the stored
    key named "default": the environment wins so a user can override a stored key for one
    session. A name asked for explicitly wins over the environment. An unknown name falls back
    to the default (`key_choice_note` says so in the run's report).
    """
    env = os.environ if environ is None else environ
    keys = (read_stored_keys(stored_keys_path()) if stored is None else stored).get(provider, {})
    value = "" if is_default_name(name) else keys.get(name.strip(), "")
    value = value or env.get(env_var, "").strip() or keys.get(DEFAULT_KEY_NAME, "")
    if not value:
        raise MissingApiKeyError(provider, env_var)
    if not (value.isascii() and value.isprintable()):
        # HTTP headers carry ASCII only: refused here, in words, instead of an encoding error mid-request.
        raise AuthenticationError(
            f"The {provider} key contains a character an HTTP header cannot carry (a non-ASCII letter or a control "
            f"character, often picked up when copying it); nothing was sent. Set {env_var} or the stored key again.",
            provider=provider, billed=NOT_BILLED)
    return ApiKey(value)


def key_choice_note(provider: str, name: str, *, stored: StoredKeys | None = None) -> str | None:
    """What the report says when a workflow names a key this machine does not have."""
    if is_default_name(name):
        return None
    keys = (read_stored_keys(stored_keys_path()) if stored is None else stored).get(provider, {})
    if name.strip() in keys:
        return None
    return (f"key_name {name.strip()!r}: no {provider} key of that name is stored here, so the default {provider} "
            "key was used (store one under that name in Settings > FLUX.2 Flex).")


@dataclass(frozen=True)
class KeyScope:
    """The set of URLs a provider's key may travel to.

    `base_url` is the configured API root: its host is trusted on any port (so an override to a
    proxy or a loopback test server works). `trusted_domain` (such as bfl.ai) is trusted for
    https URLs on that domain and its subdomains, because providers hand out polling URLs on other
    clusters of their own (api.eu2.bfl.ai, gateway.bfl.ai).
    """

    base_url: str
    trusted_domain: str | None = None

    def allows(self, url: str) -> bool:
        target = urlsplit(url)
        host = (target.hostname or "").lower()
        if not host or target.scheme not in ("http", "https"):
            return False
        base = urlsplit(self.base_url)
        if host == (base.hostname or "").lower() and target.scheme == base.scheme:
            return True
        if self.trusted_domain and target.scheme == "https":
            return host == self.trusted_domain or host.endswith("." + self.trusted_domain)
        return False

    def check(self, url: str, purpose: str) -> None:
        if not self.allows(url):
            host = urlsplit(url).hostname or url[:40]
            raise UnsafeUrlError(
                f"The provider returned a {purpose} URL on {host}, which is not its own API host; "
                "the pack will not send your API key there."
            )
