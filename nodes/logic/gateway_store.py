"""Gateways a user adds in ComfyUI's settings, kept server-side beside the keys, never in a workflow.

The file is the same gateways.json the command line reads (engine.providers.gateway_profiles):
{"version": 1, "gateways": {name: profile}}, one per ComfyUI user, owner-only, written
atomically. Every profile is checked field by field before it is stored, so a stored profile
always loads; a bad one is refused with the field's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..engine.files import write_atomically
from ..engine.providers import user_gateway_profile
from ..engine.providers.gateway_profiles import GATEWAYS_FORMAT_VERSION, gateway_to_json, read_user_gateways
from .key_store import OWNER_ONLY


class GatewayStore:
    """The user's gateways.json: list, add or replace, remove."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def profiles(self) -> dict[str, dict[str, Any]]:
        """Every stored gateway as its JSON fields (they hold no secret: keys are stored apart)."""
        return {name: gateway_to_json(profile) for name, profile in read_user_gateways(self.path).items()}

    def save(self, name: str, profile: dict[str, Any] | None) -> None:
        """Store `profile` under `name` (checked first), or forget the gateway when it is None."""
        stored = self.profiles()
        if profile is None:
            stored.pop(name, None)
        else:
            stored[name] = gateway_to_json(user_gateway_profile(name, profile))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, json.dumps({"version": GATEWAYS_FORMAT_VERSION, "gateways": stored},
                                               indent=1).encode("utf-8"), mode=OWNER_ONLY)
