"""The providers a user can pick, by name. A new reseller is one module plus its entry here
and in the pricing table."""

from __future__ import annotations

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
# Everything stored next to the keys (never in a workflow): the keys and per-account settings such
# as Microsoft Foundry's endpoint. Name -> its environment variable.
STORED_ENV_VARS: dict[str, str] = {
    **KEY_ENV_VARS, **{name: env for cls in PROVIDER_CLASSES.values() for name, env in cls.stored_settings.items()}
}


def make_provider(name: str, *, environ: Mapping[str, str] | None = None, **options) -> Provider:
    """Instantiate a provider by name, with a message listing the valid names otherwise."""
    try:
        cls = PROVIDER_CLASSES[name]
    except KeyError:
        raise InvalidRequestError("provider", name, f"one of {', '.join(PROVIDER_NAMES)}") from None
    return cls(environ=environ, **options)
