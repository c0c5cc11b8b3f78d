"""API keys: where they come from and where they may go.

A key is wrapped in `ApiKey` as soon as it is read, so an accidental print, log line, repr or
f-string shows a mask instead of the secret. `KeyScope` decides which URLs a key may be sent to:
the configured API host, or a provider's own domain over https; never a result-delivery host.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from .errors import MissingApiKeyError, UnsafeUrlError
from .settings import current as current_settings

STORED_KEYS_FILE_ENV = "FLUX_FLEX_KEYS_FILE"


class ApiKey:
    """A secret that refuses to be shown: only `reveal()` returns the raw value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value.strip()

    def reveal(self) -> str:
        return self._value

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


def read_stored_keys(path: Path | None) -> dict[str, str]:
    """Keys saved through ComfyUI's settings dialog: {provider: key}; missing file means none."""
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str) and v.strip()} if isinstance(data, dict) else {}


def stored_keys_path() -> Path | None:
    """The stored-keys file: the one ComfyUI configured, else FLUX_FLEX_KEYS_FILE if set."""
    configured_file = current_settings().stored_keys_file
    if configured_file is not None:
        return configured_file
    configured = os.environ.get(STORED_KEYS_FILE_ENV)
    return Path(configured) if configured else None


def resolve_api_key(
    provider: str,
    env_var: str,
    *,
    environ: Mapping[str, str] | None = None,
    stored: Mapping[str, str] | None = None,
) -> ApiKey:
    """The provider's key from its usual environment variable, else from the stored keys.

    The environment wins so a user can override a stored key for one session.
    """
    env = os.environ if environ is None else environ
    value = env.get(env_var, "").strip()
    if not value:
        keys = read_stored_keys(stored_keys_path()) if stored is None else stored
        value = keys.get(provider, "").strip()
    if not value:
        raise MissingApiKeyError(provider, env_var)
    return ApiKey(value)


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
