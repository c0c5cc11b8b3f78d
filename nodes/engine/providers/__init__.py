"""The providers a user can pick, by name. A new reseller is one module plus its entry here
and in the pricing table; a new gateway of a known family is a profile (gateway_profiles.py),
built in or added by the user in gateways.json."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import FluxFlexError, InvalidRequestError
from .gateway_profiles import (
    BUILT_IN_PROFILES, OPENAI_IMAGES, GatewayProfile, profile_from_mapping, read_user_gateways,
    user_gateways_path,
)

if TYPE_CHECKING:
    from .base import Provider

LOG = logging.getLogger("comfyui_flux2_flex")
# Each built-in provider by name, with where its class lives ("module:Class"), in the order users
# see them. A class is loaded when first asked for: a run loads its own provider's module, not
# every provider's (each with its HTTP machinery), so a command answered from the result cache
# stays quick.
BUILT_IN_CLASSES: dict[str, str] = {
    "bfl": "bfl:BflProvider", "bfl-eu": "bfl:BflEuProvider", "bfl-us": "bfl:BflUsProvider",
    "replicate": "replicate:ReplicateProvider", "fal": "fal:FalProvider", "apiframe": "apiframe:ApiframeProvider",
    "openrouter": "openrouter:OpenRouterProvider", "azure-foundry": "azure_foundry:AzureFoundryProvider",
}
PROVIDER_NAMES: tuple[str, ...] = (*BUILT_IN_CLASSES, *BUILT_IN_PROFILES)


def gateway_provider(profile: GatewayProfile) -> type[Provider]:
    """The provider class a gateway profile describes: its family's class with the profile's data."""
    from .base import ProviderLimits

    if profile.family == OPENAI_IMAGES:
        from .openai_gateway import OpenAIImagesGateway as family, openai_gateway_limits

        limits = openai_gateway_limits(profile)
    else:
        from .bfl import UPLOAD_FORMATS
        from .bfl_gateway import BflGateway as family

        limits = ProviderLimits(max_images=profile.max_references, upload_formats=UPLOAD_FORMATS)
    return type(f"{family.__name__}[{profile.name}]", (family,), dict(
        profile=profile, name=profile.name, label=profile.label, key_env_var=profile.key_env_var,
        key_header=profile.auth_header, key_prefix=f"{profile.auth_scheme} " if profile.auth_scheme else "",
        default_base_url=profile.origin, limits=limits,
    ))


@cache
def _built_in_class(name: str) -> type[Provider]:
    """A built-in provider's or gateway's class, its module loaded on first use; one class per name."""
    if name in BUILT_IN_PROFILES:
        return gateway_provider(BUILT_IN_PROFILES[name])
    module, _, class_name = BUILT_IN_CLASSES[name].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), class_name)


@cache
def _provider_classes() -> dict[str, type[Provider]]:
    return {name: _built_in_class(name) for name in PROVIDER_NAMES}


@cache
def _key_env_vars() -> dict[str, str]:
    """One stored key per account: BFL's regions share the "bfl" key. Name -> its environment variable."""
    return {cls.key_name or cls.name: cls.key_env_var for cls in _provider_classes().values()}


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


@cache
def _stored_entries() -> tuple[StoredEntry, ...]:
    """Everything stored next to the keys (never in a workflow): keys first, one per account,
    labelled by the first provider using it; then the per-account options."""
    users: dict[str, list[type[Provider]]] = {}
    for cls in _provider_classes().values():
        users.setdefault(cls.key_name or cls.name, []).append(cls)
    keys = [StoredEntry(account, classes[0].key_env_var, classes[0].label, tuple(cls.name for cls in classes))
            for account, classes in users.items()]
    options = [StoredEntry(name, env_var, cls.label, option=name.removeprefix(f"{cls.name}-"), option_of=cls.name,
                           example=cls.stored_setting_examples.get(name, ""))
               for cls in _provider_classes().values() for name, env_var in cls.stored_settings.items()]
    return (*keys, *options)


@cache
def _stored_env_vars() -> dict[str, str]:
    return {entry.name: entry.env_var for entry in _stored_entries()}


# The tables that need every provider's class (the nodes' and the settings form's), built on first use.
_TABLES = {"PROVIDER_CLASSES": _provider_classes, "KEY_ENV_VARS": _key_env_vars, "STORED_ENTRIES": _stored_entries,
           "STORED_ENV_VARS": _stored_env_vars}


def __getattr__(name: str) -> Any:
    if name not in _TABLES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _TABLES[name]()


def _unused_name(name: str) -> str:
    if name in PROVIDER_NAMES:
        raise InvalidRequestError("gateway name", name, "a name no built-in provider has")
    return name


def user_gateway_profile(name: str, data: object) -> GatewayProfile:
    """A gateway the user adds: checked like a built-in one, under a name no provider has yet."""
    return profile_from_mapping(_unused_name(name), data)


def user_gateway_classes() -> dict[str, type[Provider]]:
    """The gateways the user added (gateways.json), as provider classes; a broken file is refused."""
    return {_unused_name(name): gateway_provider(profile) for name, profile in read_user_gateways().items()}


def provider_names() -> tuple[str, ...]:
    """Every provider this machine can use now: the built-in ones, then the user's gateways. A broken
    gateways file lists none of its gateways (and says why in the log): a run naming one is refused."""
    try:
        added = tuple(_unused_name(name) for name in read_user_gateways())
    except FluxFlexError as error:
        LOG.warning("FLUX.2 Flex: the user's gateways are not usable: %s", error)
        added = ()
    return PROVIDER_NAMES + added


def gateway_key_entries(gateways: Mapping[str, GatewayProfile]) -> tuple[StoredEntry, ...]:
    """The keys of the gateways a user added, stored beside the built-in providers' entries."""
    return tuple(StoredEntry(name, profile.key_env_var, profile.label, (name,)) for name, profile in gateways.items())


def provider_class(name: str) -> type[Provider]:
    """The class of a built-in provider or a user's gateway, or an error naming what is known."""
    if name in PROVIDER_NAMES:
        return _built_in_class(name)
    added = user_gateway_classes()
    if name in added:
        return added[name]
    raise InvalidRequestError("provider", name, f"one of {', '.join(PROVIDER_NAMES + tuple(added))}, or a gateway "
                              f"added in {user_gateways_path()}") from None


def make_provider(name: str, *, environ: Mapping[str, str] | None = None, **options) -> Provider:
    """Instantiate a provider by name, with a message listing the valid names otherwise."""
    return provider_class(name)(environ=environ, **options)
