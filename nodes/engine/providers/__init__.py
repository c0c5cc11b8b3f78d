"""The providers a user can pick, by name. A new reseller is one module plus its entry here
and in the pricing table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..errors import InvalidRequestError
from .apiframe import ApiframeProvider
from .azure_foundry import AzureFoundryProvider
from .base import Provider
from .bfl import BflEuProvider, BflProvider, BflUsProvider
from .cometapi import CometApiProvider
from .fal import FalProvider
from .openrouter import OpenRouterProvider
from .replicate import ReplicateProvider

PROVIDER_CLASSES: dict[str, type[Provider]] = {
    cls.name: cls
    for cls in (
        BflProvider, BflEuProvider, BflUsProvider, ReplicateProvider, FalProvider, CometApiProvider,
        ApiframeProvider, OpenRouterProvider, AzureFoundryProvider,
    )
}
PROVIDER_NAMES: tuple[str, ...] = tuple(PROVIDER_CLASSES)
# One stored key per account: BFL's regions share the "bfl" key. Name -> its environment variable.
KEY_ENV_VARS: dict[str, str] = {cls.key_name or cls.name: cls.key_env_var for cls in PROVIDER_CLASSES.values()}


@dataclass(frozen=True)
class StoredEntry:
    """One thing the settings form stores on the server: an account's key, or one of its options
    (Microsoft Foundry's endpoint), which is not a secret and so may be shown back."""

    name: str  # the name the key store files it under
    env_var: str  # the environment variable that overrides it
    label: str  # the provider, as the user knows it
    used_by: tuple[str, ...] = ()  # for a key: the provider choices that use it (BFL's regions share one)
    option: str = ""  # for an option: what it is ("endpoint"); empty for a key
    option_of: str = ""  # for an option: the account whose key it goes with
    example: str = ""  # for an option: what a value looks like

    @property
    def is_key(self) -> bool:
        return not self.option


def _stored_entries() -> tuple[StoredEntry, ...]:
    """Keys first, one per account, labelled by the first provider using it; then the options."""
    users: dict[str, list[type[Provider]]] = {}
    for cls in PROVIDER_CLASSES.values():
        users.setdefault(cls.key_name or cls.name, []).append(cls)
    keys = [StoredEntry(account, classes[0].key_env_var, classes[0].label, tuple(cls.name for cls in classes))
            for account, classes in users.items()]
    options = [StoredEntry(name, env_var, cls.label, option=name.removeprefix(f"{cls.name}-"), option_of=cls.name,
                           example=cls.stored_setting_examples.get(name, ""))
               for cls in PROVIDER_CLASSES.values() for name, env_var in cls.stored_settings.items()]
    return (*keys, *options)


# Everything stored next to the keys (never in a workflow): the keys and per-account options.
STORED_ENTRIES: tuple[StoredEntry, ...] = _stored_entries()
STORED_ENV_VARS: dict[str, str] = {entry.name: entry.env_var for entry in STORED_ENTRIES}


def make_provider(name: str, *, environ: Mapping[str, str] | None = None, **options) -> Provider:
    """Instantiate a provider by name, with a message listing the valid names otherwise."""
    try:
        cls = PROVIDER_CLASSES[name]
    except KeyError:
        raise InvalidRequestError("provider", name, f"one of {', '.join(PROVIDER_NAMES)}") from None
    return cls(environ=environ, **options)
