"""BFL's EU-only and US-only endpoints: their hosts, their URL overrides, BFL's one key, and where
that key may travel when a task is polled on another BFL cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyui_flux2_flex.nodes.engine.providers import make_provider

from fakes.bfl_server import FakeBfl

REGIONS = {"bfl-eu": "https://api.eu.bfl.ai", "bfl-us": "https://api.us.bfl.ai"}


@pytest.mark.parametrize(("region", "host"), REGIONS.items())
def test_each_region_defaults_to_its_own_host(region: str, host: str) -> None:
    provider = make_provider(region, environ={})
    assert provider.base_url == host
    assert provider.base_url_env_var() == "FLUX_FLEX_" + region.upper().replace("-", "_") + "_URL"


def test_a_key_stored_for_bfl_serves_both_regions(fake_bfl: FakeBfl, monkeypatch, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({"bfl": fake_bfl.api_key}))
    monkeypatch.setenv("FLUX_FLEX_KEYS_FILE", str(keys_file))
    for region in REGIONS:
        assert make_provider(region, environ={}).api_key.reveal() == fake_bfl.api_key


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize(
    ("polling_url", "allowed"),
    [
        ("https://api.eu2.bfl.ai/v1/get_result?id=t1", True),  # the cluster that took the task
        ("https://gateway.bfl.ai/v1/get_result?id=t1", True),
        ("https://bfl.ai/v1/get_result?id=t1", True),
        ("http://api.eu2.bfl.ai/v1/get_result?id=t1", False),  # the key would cross the network in clear
        ("https://bfl.ai.evil.example/v1/get_result?id=t1", False),
        ("https://evilbfl.ai/v1/get_result?id=t1", False),
        ("https://api.bfl.ai@evil.example/v1/get_result?id=t1", False),
    ],
)
def test_the_key_goes_to_any_bfl_cluster_over_https_and_nowhere_else(region: str, polling_url: str,
                                                                      allowed: bool) -> None:
    assert make_provider(region, environ={}).key_scope.allows(polling_url) is allowed
