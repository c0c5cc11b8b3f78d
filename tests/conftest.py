"""Shared fixtures: a loopback BFL, a provider pointed at it, and no path to real keys or hubs.

The provider fixtures (`stand_in`, `fake`, `key`, `provider`) follow a `name` fixture: the shared
suite (test_providers.py) gives every provider name in turn, each provider's own test file its own.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest

from comfyui_flux2_flex.nodes.engine.keys import ApiKey
from comfyui_flux2_flex.nodes.engine.polling import DURATIONS
from comfyui_flux2_flex.nodes.engine.providers import PROVIDER_CLASSES, make_provider
from comfyui_flux2_flex.nodes.engine.providers.base import Provider
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider

from comfyui_runner import comfy, comfy_bfl, object_info  # noqa: F401 (fixtures for the ComfyUI tests)
from fakes.bfl_server import FakeBfl
from fakes.loopback import LoopbackFake
from fakes.stand_ins import STAND_INS, StandIn

os.environ["HF_HUB_OFFLINE"] = "1"
# The stand-ins show a task from its submit on (no replication lag, unless a plan asks for one)
# and their tasks take a fraction of a second: the in-process tests poll on that timing instead of
# the real providers' (a first poll after 1 s, 16 s tasks), which only test_polling.py exercises.
# The client's own intervals (1 s without a prediction, 0.25 s once overdue, the backoff after a
# refused submit) run at the same tenth of real time: each test still walks every poll and retry
# it checks, it only waits less for them. A test that needs a real-time interval sets `pace` back.
STAND_IN_PACE = 0.1
STAND_IN_TIMING = dict(visible_after=0.25 * STAND_IN_PACE, typical_seconds=0.5 * STAND_IN_PACE, pace=STAND_IN_PACE)
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
    per-user folders (the CLI's default journal of paid tasks, the user's gateways)."""
    for name in list(os.environ):
        if (name.endswith(("_API_KEY", "_API_TOKEN")) or name in ("FAL_KEY", "COMETAPI_KEY")
                or name.startswith(("FLUX_FLEX_", "AZURE_FOUNDRY_"))):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local-app-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))  # the user's gateways.json
    monkeypatch.setenv("APPDATA", str(tmp_path / "app-data"))
    for cls in PROVIDER_CLASSES.values():
        monkeypatch.setattr(cls, "poll_timing", replace(cls.poll_timing, **STAND_IN_TIMING))
    DURATIONS.clear()


@pytest.fixture
def fake_bfl() -> Iterator[FakeBfl]:
    with FakeBfl() as server:
        yield server


@pytest.fixture
def bfl(fake_bfl: FakeBfl) -> BflProvider:
    return BflProvider(base_url=fake_bfl.api_url, api_key=ApiKey(fake_bfl.api_key))


@pytest.fixture
def bfl_env(fake_bfl: FakeBfl, monkeypatch: pytest.MonkeyPatch) -> FakeBfl:
    """The loopback BFL with its key and URL in the environment, as the CLI and the nodes read them."""
    monkeypatch.setenv("BFL_API_KEY", fake_bfl.api_key)
    monkeypatch.setenv("FLUX_FLEX_BFL_URL", fake_bfl.api_url)
    return fake_bfl


@pytest.fixture
def stand_in(name: str) -> StandIn:
    if name not in STAND_INS:
        pytest.fail(f"provider {name} has no stand-in: register one in tests/fakes (see fakes/stand_ins.py)")
    return STAND_INS[name]


@pytest.fixture
def fake(stand_in: StandIn) -> Iterator[LoopbackFake]:
    with stand_in.start() as server:
        yield server


@pytest.fixture
def key(fake: LoopbackFake) -> str:
    return fake.api_key


@pytest.fixture
def provider(name: str, fake: LoopbackFake, key: str) -> Provider:
    return make_provider(name, base_url=fake.api_url, api_key=ApiKey(key), environ={})
