"""Shared fixtures: a loopback BFL, a provider pointed at it, and no path to real keys or hubs."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator

import pytest

from comfyui_flux2_flex.nodes.engine.keys import ApiKey
from comfyui_flux2_flex.nodes.engine.polling import DURATIONS
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider

from comfyui_runner import comfy, comfy_bfl, object_info  # noqa: F401 (fixtures for the ComfyUI tests)
from fakes.bfl_server import FakeBfl

os.environ["HF_HUB_OFFLINE"] = "1"
_connect = socket.socket.connect


def _connect_to_loopback_only(self: socket.socket, address) -> None:
    """Every socket the tests open may reach 127.0.0.1 (or ::1) and nothing else."""
    if self.family in (socket.AF_INET, socket.AF_INET6) and not ipaddress.ip_address(address[0]).is_loopback:
        raise ConnectionRefusedError(f"a test tried to reach {address[0]}: tests talk to loopback only")
    return _connect(self, address)


socket.socket.connect = _connect_to_loopback_only


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No test may pick up a developer's real keys, stored keys or base URLs, nor write to their
    per-user folders (the CLI's default journal of paid tasks)."""
    for name in list(os.environ):
        if name.endswith(("_API_KEY", "_API_TOKEN")) or name in ("FAL_KEY", "COMETAPI_KEY") or name.startswith("FLUX_FLEX_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local-app-data"))
    DURATIONS.clear()


@pytest.fixture
def fake_bfl() -> Iterator[FakeBfl]:
    with FakeBfl() as server:
        yield server


@pytest.fixture
def bfl(fake_bfl: FakeBfl) -> BflProvider:
    return BflProvider(base_url=fake_bfl.api_url, api_key=ApiKey(fake_bfl.api_key))
