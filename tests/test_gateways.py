"""Gateways as data: APIYI and its OpenAI-images siblings, the BFL-compatible relays, and a
gateway the user adds in gateways.json, each against its loopback stand-in.

What every provider must do (never pay twice, keys kept out, moderation, lost answers) runs for
every built-in gateway in test_providers.py; here is what only gateways do.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.cli import main
from comfyui_flux2_flex.nodes.engine.keys import ApiKey
from comfyui_flux2_flex.nodes.engine.pricing import estimate
from comfyui_flux2_flex.nodes.engine.providers import KEY_ENV_VARS, make_provider, provider_names
from comfyui_flux2_flex.nodes.engine.providers.gateway_profiles import (
    BUILT_IN_PROFILES, profile_from_mapping, read_user_gateways, user_gateways_path,
)
from comfyui_flux2_flex.nodes.engine.request import FlexRequest
from comfyui_flux2_flex.nodes.engine.runner import prepare
from comfyui_flux2_flex.nodes.logic.gateway_store import GatewayStore
from comfyui_flux2_flex.nodes.logic.node_runs import NodeSettings, check_settings

from fakes.bfl_gateway_server import FakeBflGateway
from fakes.openai_gateway_server import MULTIPART_FILES, MULTIPART_URLS, JSON_FORM, FakeOpenAIGateway
from fakes.pictures import render_result
from provider_runs import FOX, picture, run

APIYI = BUILT_IN_PROFILES["apiyi"]
MY_GATEWAY = {"family": "openai-images", "label": "My gateway", "origin": "https://img.example.com", "prefix": "/api/v1",
              "model": "black-forest-labs/flux-2-flex", "size_style": "width_height", "answer_form": "b64_json",
              "fields": {"steps": "inference_steps", "guidance": "guidance_scale", "prompt_upsampling": None}}


def write_gateways(path: Path, gateways: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "gateways": gateways}), encoding="utf-8")
    return path


def test_apiyi_sends_every_flex_setting_and_fetches_the_link_at_once_without_the_key() -> None:
    with FakeOpenAIGateway(APIYI) as gateway:
        provider = make_provider("apiyi", base_url=gateway.api_url, api_key=ApiKey(gateway.api_key), environ={})
        request = FlexRequest(prompt="poster", width=1024, height=768, steps=20, guidance=3.5, seed=9,
                              safety_tolerance=4, output_format="jpeg", prompt_upsampling=False)
        result = run(provider, request)
        (post,) = gateway.submits
        (download,) = gateway.delivery.requests
    assert (post.path, post.headers["authorization"]) == ("/v1/images/generations", f"Bearer {gateway.api_key}")
    assert post.json() == {"model": "flux-2-flex", "prompt": "poster", "size": "1024x768", "steps": 20,
                           "guidance": 3.5, "seed": 9, "safety_tolerance": 4, "output_format": "jpeg",
                           "prompt_upsampling": False}
    assert gateway.api_key not in str(download.headers) and "signature" in download.query
    assert result.pixels.shape == (768, 1024, 3) and "apiyi: price unknown" in result.report()


def test_apiyi_takes_eight_references_as_data_uris_in_json_and_refuses_a_ninth_before_sending() -> None:
    with FakeOpenAIGateway(APIYI) as gateway:
        provider = make_provider("apiyi", base_url=gateway.api_url, api_key=ApiKey(gateway.api_key), environ={})
        result = run(provider, FlexRequest(prompt="blend", width=None, height=None,
                                           images=(picture(320, 240),) + (picture(32, 32),) * 7))
        with pytest.raises(errors.InvalidRequestError, match="at most 8 images"):
            prepare(FlexRequest(prompt="p", images=(picture(32, 32),) * 9), provider)
        body = gateway.submits[0].json()
    assert gateway.edit_forms == [JSON_FORM] and len(gateway.submits) == 1
    assert [name for name in body if name.startswith("input_image")] == \
        ["input_image", *(f"input_image_{n}" for n in range(2, 9))]
    assert body["input_image"].startswith("data:image/png;base64,") and "size" not in body
    assert result.pixels.shape == (240, 320, 3), "without a size the output follows the first reference"


def test_a_profile_can_send_references_as_multipart_files_to_the_edit_route() -> None:
    write_gateways(user_gateways_path(), {"apiyi-files": {**MY_GATEWAY, "reference_form": "multipart_image_array",
                                                          "size_style": "size"}})
    with FakeOpenAIGateway(read_user_gateways()["apiyi-files"]) as gateway:
        provider = make_provider("apiyi-files", base_url=gateway.api_url, api_key=ApiKey(gateway.api_key), environ={})
        result = run(provider, FlexRequest(prompt="edit", width=256, height=256, steps=12,
                                           images=(picture(64, 48), picture(32, 32))))
    (post,) = gateway.submits
    assert post.path == "/api/v1/images/edits" and gateway.edit_forms == [MULTIPART_FILES]
    assert gateway.generated[0]["inference_steps"] == 12 and gateway.generated[0]["references"] == 2
    assert result.pixels.shape == (256, 256, 3)


def test_the_stand_in_also_speaks_apiyis_third_documented_edit_form_with_url_strings() -> None:
    """APIYI's Chinese page: multipart to /v1/images/edits with URL strings in image, input_image_2...
    The pack does not send it (it needs public hosting); the stand-in answers it as documented."""
    reference = "data:image/png;base64," + base64.b64encode(render_result(64, 48, 1, "png")).decode()
    with FakeOpenAIGateway(APIYI) as gateway:
        answer = httpx.post(f"{gateway.api_url}/v1/images/edits", headers={"Authorization": f"Bearer {gateway.api_key}"},
                            files={"model": (None, "flux-2-flex"), "prompt": (None, "p"), "image": (None, reference),
                                   "input_image_2": (None, reference)})
    assert answer.status_code == 200 and gateway.edit_forms == [MULTIPART_URLS]
    assert gateway.generated[0]["references"] == 2


def test_a_gateway_that_takes_no_field_for_a_setting_says_so_in_the_report() -> None:
    write_gateways(user_gateways_path(), {"mygw": MY_GATEWAY})
    with FakeOpenAIGateway(read_user_gateways()["mygw"]) as gateway:
        provider = make_provider("mygw", base_url=gateway.api_url, api_key=ApiKey(gateway.api_key), environ={})
        result = run(provider, FlexRequest(prompt="p", width=512, height=256, steps=9, guidance=2.5))
    body = gateway.submits[0].json()
    assert (body["width"], body["height"], body["inference_steps"], body["guidance_scale"]) == (512, 256, 9, 2.5)
    assert "prompt_upsampling" not in body and "steps" not in body
    assert "My gateway takes no prompt_upsampling field: prompt_upsampling=True was not sent" in result.report()


@pytest.mark.parametrize("mode", ["foreign", "none", "own"])
def test_a_bfl_compatible_gateway_is_polled_on_its_own_host_and_its_key_goes_nowhere_else(mode: str) -> None:
    with FakeBflGateway(BUILT_IN_PROFILES["openai-hk"], polling_url_mode=mode) as gateway:
        provider = make_provider("openai-hk", base_url=gateway.api_url, api_key=ApiKey(gateway.api_key), environ={})
        result = run(provider)
        keyed = [r for r in gateway.all_requests() if gateway.api_key in str(r.headers)]
    assert gateway.cluster_requests == [], "BFL's own polling_url is never followed with the gateway's key"
    assert {r.path for r in keyed} == {"/bfl/v1/flux-2-flex", "/bfl/v1/get_result"}
    assert result.pixels.shape == (256, 320, 3) and result.reported_cost == (None if mode == "none" else 5.0)


def test_keys_and_url_overrides_follow_the_gateways_names() -> None:
    assert KEY_ENV_VARS["dmxapi"] == "DMXAPI_API_KEY" and KEY_ENV_VARS["openai-hk"] == "OPENAI_HK_API_KEY"
    assert KEY_ENV_VARS["apiyi"] == "APIYI_API_KEY"
    dmx = make_provider("dmxapi", environ={"FLUX_FLEX_DMXAPI_URL": "https://proxy.example:8443"})
    assert dmx.submit_url(FOX) == "https://proxy.example:8443/flux/v1/flux-2-flex"
    assert make_provider("apiyi", environ={}).submit_url(FOX) == "https://api.apiyi.com/v1/images/generations"
    assert make_provider("openai-hk", environ={"OPENAI_HK_API_KEY": "sk-hk-0123456789"}).api_key.reveal() == \
        "sk-hk-0123456789"


def test_prices_are_the_gateways_own_or_unknown_with_the_reason() -> None:
    assert estimate(FlexRequest(prompt="p", width=2048, height=2048), "laozhang").usd == pytest.approx(0.06)
    unknown = estimate(FOX, "apiyi")
    assert unknown.usd is None and "what BFL charges at 1 MP" in unknown.summary()


def test_a_gateway_added_in_gateways_json_runs_from_the_command_line(monkeypatch, tmp_path: Path, capsys) -> None:
    path = write_gateways(user_gateways_path(), {"mygw": MY_GATEWAY})
    assert path == tmp_path / "xdg-config" / "flux2-flex" / "gateways.json"
    profile = read_user_gateways()["mygw"]
    assert "mygw" in provider_names()
    with FakeOpenAIGateway(profile) as gateway:
        monkeypatch.setenv("MYGW_API_KEY", gateway.api_key)
        monkeypatch.setenv("FLUX_FLEX_MYGW_URL", gateway.api_url)
        out = tmp_path / "x.png"
        assert main(["generate", "--provider", "mygw", "--prompt", "fox", "--width", "320", "--height", "256",
                     "--out", str(out)]) == 0
    with Image.open(out) as saved:
        assert saved.size == (320, 256)
    assert gateway.submits[0].path == "/api/v1/images/generations" and "mygw task" in capsys.readouterr().out


@pytest.mark.parametrize(("change", "field"), [
    ({"origin": None}, "gateway mygw: origin"),
    ({"origin": "http://img.example.com"}, "gateway mygw: origin"),
    ({"family": "grpc"}, "gateway mygw: family"),
    ({"model": ""}, "gateway mygw: model"),
    ({"fields": {"steps": 5}}, "gateway mygw: fields.steps"),
    ({"fields": {"sampler": "x"}}, "gateway mygw: fields.sampler"),
    ({"answer_form": "poll"}, "gateway mygw: answer_form"),
    ({"max_references": 12}, "gateway mygw: max_references"),
    ({"price_per_image_usd": "cheap"}, "gateway mygw: price_per_image_usd"),
    ({"colour": "red"}, "gateway mygw: colour"),
])
def test_a_profile_with_a_bad_or_missing_field_is_refused_naming_the_field(change: dict, field: str) -> None:
    profile = {key: value for key, value in {**MY_GATEWAY, **change}.items() if value is not None}
    with pytest.raises(errors.InvalidRequestError) as caught:
        profile_from_mapping("mygw", profile)
    assert caught.value.field == field and field in str(caught.value)


def test_a_broken_gateways_file_is_refused_naming_the_field_when_a_run_names_a_gateway() -> None:
    write_gateways(user_gateways_path(), {"mygw": {**MY_GATEWAY, "origin": "ftp://x"}})
    with pytest.raises(errors.InvalidRequestError, match="gateway mygw: origin"):
        make_provider("mygw")
    assert "mygw" not in provider_names() and "apiyi" in provider_names()


def test_a_workflow_naming_a_gateway_this_machine_does_not_know_fails_before_paying_naming_it() -> None:
    message = check_settings(NodeSettings(provider="friends-gateway", prompt="p"))
    assert message and "friends-gateway" in message and "gateways.json" in message
    with pytest.raises(errors.InvalidRequestError, match="friends-gateway"):
        make_provider("friends-gateway")


def test_comfyuis_gateway_store_keeps_checked_profiles_owner_only_beside_the_keys(tmp_path: Path) -> None:
    store = GatewayStore(tmp_path / "flux2_flex" / "gateways.json")
    store.save("mygw", MY_GATEWAY)
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert read_user_gateways(store.path)["mygw"].fields["steps"] == "inference_steps"
    with pytest.raises(errors.InvalidRequestError, match="gateway mygw: origin"):
        store.save("mygw", {**MY_GATEWAY, "origin": "https://x.example/v1"})
    with pytest.raises(errors.InvalidRequestError, match="gateway name = 'fal'"):
        store.save("fal", MY_GATEWAY)
    store.save("mygw", None)
    assert store.profiles() == {}
