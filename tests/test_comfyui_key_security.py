"""Stored keys against a real ComfyUI on a shared network and with several users.

One ComfyUI listens on all interfaces (`--listen 0.0.0.0`, as a LAN install does); the tests
still connect only to 127.0.0.1, sending the Host and Origin headers a browser would send for
the LAN address or a rebound name. Another runs `--multi-user` with two users, each with their
own key for the loopback BFL, which tells their requests apart by the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyui_flux2_flex.nodes.engine.providers.gateway_profiles import profile_from_mapping
from comfyui_runner import ComfyUI, needs_comfyui, running_comfyui
from fakes.bfl_gateway_server import FakeBflGateway
from fakes.bfl_server import FakeBfl
from fakes.loopback import Request
from workflow_format import TEXT_TO_IMAGE, load, to_api_prompt

pytestmark = needs_comfyui
ROUTE = "/flux2_flex/keys"
LAN_HOST = "192.168.1.20"  # the address a LAN browser would use; the connection itself goes to 127.0.0.1
ATTACKER_KEY = "attacker-key-0000000000"


LEGACY_KEY = "r8_stored_before_names_1234"


@pytest.fixture(scope="module")
def lan_comfy(comfy_bfl: FakeBfl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyUI]:
    root = tmp_path_factory.mktemp("comfyui_lan")
    legacy = root / "user" / "flux2_flex" / "keys.json"  # a key file of the first format, {provider: key}
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"replicate": LEGACY_KEY}))
    with running_comfyui(root, comfy_bfl, listen="0.0.0.0") as server:
        yield server


def test_keys_stored_before_are_migrated_on_start(lan_comfy: ComfyUI) -> None:
    assert stored(lan_comfy) == {"replicate": {"default": LEGACY_KEY}}
    assert lan_comfy.client.get(ROUTE, headers=lan_comfy.key_headers()).json()["replicate"]["stored"] is True
    assert LEGACY_KEY not in lan_comfy.log_path.read_text()


def key_file(comfy: ComfyUI, user: str | None = None) -> Path:
    folder = comfy.root / "user" / "flux2_flex"
    return (folder / "users" / user if user else folder) / "keys.json"


def stored(comfy: ComfyUI, user: str | None = None) -> dict[str, Any]:
    path = key_file(comfy, user)
    return json.loads(path.read_text())["keys"] if path.is_file() else {}


def test_the_page_itself_may_store_a_key_by_the_lan_address(lan_comfy: ComfyUI) -> None:
    lan = f"{LAN_HOST}:{lan_comfy.port}"
    response = lan_comfy.client.post(ROUTE, json={"provider": "fal", "key": "fal-users-own-key-1"},
                                     headers={"X-Flux2-Flex": "1", "Host": lan, "Origin": f"http://{lan}"})
    assert response.status_code == 200, response.text
    assert stored(lan_comfy)["fal"] == {"default": "fal-users-own-key-1"}
    log = lan_comfy.log_path.read_text()
    assert "stored the fal key 'default', from 127.0.0.1" in log and "fal-users-own-key-1" not in log


@pytest.mark.parametrize("fetch_site", ["cross-site", None], ids=["modern-browser", "no-fetch-metadata"])
def test_a_cross_origin_form_post_is_refused(lan_comfy: ComfyUI, fetch_site: str | None) -> None:
    # <form enctype="text/plain"> on a foreign page can post a body that parses as JSON.
    lan = f"{LAN_HOST}:{lan_comfy.port}"
    headers = {"Host": lan, "Origin": "https://evil.example", "Content-Type": "text/plain"}
    if fetch_site:
        headers["Sec-Fetch-Site"] = fetch_site
    before = stored(lan_comfy)
    body = json.dumps({"provider": "bfl", "key": ATTACKER_KEY})
    for route_headers in (headers, {**headers, "X-Flux2-Flex": "1"}):  # with the header it would need a preflight
        response = lan_comfy.client.post(ROUTE, content=body, headers=route_headers)
        assert response.status_code == 403
    assert stored(lan_comfy) == before and ATTACKER_KEY not in key_file(lan_comfy).read_text()


def test_a_rebound_host_name_is_refused(lan_comfy: ComfyUI) -> None:
    # DNS rebinding: the attacker's page, now resolving to this machine, is same-origin with itself.
    rebound = f"attacker.example:{lan_comfy.port}"
    headers = {"X-Flux2-Flex": "1", "Host": rebound, "Origin": f"http://{rebound}", "Sec-Fetch-Site": "same-origin"}
    assert lan_comfy.client.get(ROUTE, headers=headers).status_code == 403
    response = lan_comfy.client.post(ROUTE, json={"provider": "bfl", "key": ATTACKER_KEY}, headers=headers)
    assert response.status_code == 403 and "is not a name this machine answers to" in response.text
    assert "bfl" not in stored(lan_comfy)
    assert "refused a POST of the stored keys from 127.0.0.1" in lan_comfy.log_path.read_text()


def test_listing_and_changing_keys_need_the_packs_header(lan_comfy: ComfyUI) -> None:
    assert lan_comfy.client.get(ROUTE).status_code == 403
    assert lan_comfy.client.post(ROUTE, json={"provider": "fal", "key": ""},
                                 headers={"Origin": lan_comfy.url}).status_code == 403
    assert lan_comfy.client.post(ROUTE, json={"provider": "fal", "key": ""},
                                 headers={"X-Flux2-Flex": "1"}).status_code == 403, "a change needs an Origin"
    assert "fal" in stored(lan_comfy)


# Multi-user ComfyUI


class TwoAccountBfl(FakeBfl):
    """BFL with two accounts: each user's requests are told apart by the key they carry."""

    KEYS = ("alice-bfl-key-1111111111", "bob-bfl-key-2222222222")

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("x-key") in self.KEYS


@pytest.fixture(scope="module")
def two_account_bfl() -> Iterator[TwoAccountBfl]:
    with TwoAccountBfl() as server:
        yield server


@pytest.fixture(scope="module")
def shared_comfy(two_account_bfl: TwoAccountBfl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyUI]:
    with running_comfyui(tmp_path_factory.mktemp("comfyui_multi"), two_account_bfl, extra_args=("--multi-user",),
                         key_in_environment=False) as server:
        yield server


@pytest.fixture(scope="module")
def users(shared_comfy: ComfyUI) -> dict[str, str]:
    """Two ComfyUI users, each with their own default key, and alice with a second named one."""
    ids = {}
    for name, key in zip(("alice", "bob"), TwoAccountBfl.KEYS):
        response = shared_comfy.client.post("/users", json={"username": name})
        assert response.status_code == 200, response.text
        ids[name] = response.json()
        stored_response = shared_comfy.client.post(ROUTE, json={"provider": "bfl", "key": key},
                                                   headers=shared_comfy.key_headers(**{"comfy-user": ids[name]}))
        assert stored_response.status_code == 200, stored_response.text
    named = shared_comfy.client.post(ROUTE, json={"provider": "bfl", "name": "client", "key": "alice-client-key-333"},
                                     headers=shared_comfy.key_headers(**{"comfy-user": ids["alice"]}))
    assert named.status_code == 200
    return ids


def text_to_image(shared_comfy: ComfyUI, seed: int) -> dict[str, Any]:
    object_info = shared_comfy.client.get("/object_info").json()
    prompt = to_api_prompt(load(TEXT_TO_IMAGE), object_info)
    next(n for n in prompt.values() if n["class_type"] == "FluxFlexGenerate")["inputs"]["seed"] = seed
    return prompt


def run_as(comfy: ComfyUI, user: str | None, prompt: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = comfy.queue(prompt, headers={"comfy-user": user} if user else None, **extra)
    assert response.status_code == 200, response.text
    return comfy.wait_for(response.json()["prompt_id"])


def test_each_user_has_their_own_keys(shared_comfy: ComfyUI, users: dict[str, str]) -> None:
    assert stored(shared_comfy, users["alice"])["bfl"] == {"default": TwoAccountBfl.KEYS[0],
                                                         "client": "alice-client-key-333"}
    assert stored(shared_comfy, users["bob"])["bfl"] == {"default": TwoAccountBfl.KEYS[1]}
    assert not key_file(shared_comfy).exists(), "no shared key file"
    bob_sees = shared_comfy.client.get(ROUTE, headers=shared_comfy.key_headers(**{"comfy-user": users["bob"]}))
    assert bob_sees.json()["bfl"]["names"] == ["default"], "bob does not even see alice's key names"
    unknown = shared_comfy.client.get(ROUTE, headers=shared_comfy.key_headers(**{"comfy-user": "mallory"}))
    assert unknown.status_code == 403


def test_each_user_pays_with_their_own_key_and_gets_their_own_cached_images(
        shared_comfy: ComfyUI, two_account_bfl: TwoAccountBfl, users: dict[str, str]) -> None:
    prompt = text_to_image(shared_comfy, seed=4242)
    submits = len(two_account_bfl.submits)
    assert run_as(shared_comfy, users["alice"], prompt)["status"]["status_str"] == "success"
    assert run_as(shared_comfy, users["bob"], prompt)["status"]["status_str"] == "success"
    keys_sent = [request.headers["x-key"] for request in two_account_bfl.submits[submits:]]
    assert keys_sent == list(TwoAccountBfl.KEYS), "the same prompt from bob is not answered from alice's images"
    assert run_as(shared_comfy, users["alice"], prompt)["status"]["status_str"] == "success"
    assert len(two_account_bfl.submits) == submits + 2, "alice's own repeat costs nothing"
    caches = shared_comfy.root / "user" / "flux2_flex" / "users"
    for user in users.values():
        assert list((caches / user / "result_cache").glob("*.png")), f"{user} has their own result cache"
        assert list((caches / user / "journal").iterdir()), f"{user} has their own journal of paid tasks"
    assert not (shared_comfy.root / "user" / "flux2_flex" / "result_cache").exists()
    assert not (shared_comfy.root / "user" / "flux2_flex" / "journal").exists()
    log = shared_comfy.log_path.read_text()
    assert "/results/" in log and "sig=secret-signature" not in log, "result links are logged without signatures"
    assert not any(key in log for key in TwoAccountBfl.KEYS)


def test_a_prompt_cannot_borrow_another_users_keys(shared_comfy: ComfyUI, two_account_bfl: TwoAccountBfl,
                                                   users: dict[str, str]) -> None:
    submits = len(two_account_bfl.submits)
    spoofed = run_as(shared_comfy, users["bob"], text_to_image(shared_comfy, seed=77),
                     extra_data={"flux2_flex_user": users["alice"]})
    assert spoofed["status"]["status_str"] == "success"
    assert two_account_bfl.submits[submits].headers["x-key"] == TwoAccountBfl.KEYS[1]
    anonymous = run_as(shared_comfy, None, text_to_image(shared_comfy, seed=78))
    assert anonymous["status"]["status_str"] == "error"
    assert "queued without a known user" in json.dumps(anonymous["status"]["messages"])
    assert len(two_account_bfl.submits) == submits + 1, "nobody's key pays for a prompt of no known user"


def test_a_gateway_one_user_added_runs_for_them_and_is_refused_before_paying_for_another(
        shared_comfy: ComfyUI, users: dict[str, str]) -> None:
    profile = {"family": "bfl", "label": "Alice's relay", "prefix": "/flux/v1", "model": "flux-2-flex",
               "answer_form": "poll"}
    with FakeBflGateway(profile_from_mapping("alice-relay", {**profile, "origin": "https://relay.example.com"}),
                        polling_url_mode="foreign") as relay:
        alice = shared_comfy.key_headers(**{"comfy-user": users["alice"]})
        stored = shared_comfy.client.post("/flux2_flex/gateways", headers=alice,
                                          json={"name": "alice-relay", "profile": {**profile, "origin": relay.api_url}})
        key = shared_comfy.client.post(ROUTE, headers=alice, json={"provider": "alice-relay", "key": relay.api_key})
        assert (stored.status_code, key.status_code) == (200, 200), stored.text + key.text
        prompt = text_to_image(shared_comfy, seed=91)
        next(n for n in prompt.values() if n["class_type"] == "FluxFlexGenerate")["inputs"]["provider"] = "alice-relay"
        assert run_as(shared_comfy, users["alice"], prompt)["status"]["status_str"] == "success"
        refused = shared_comfy.queue(prompt, headers={"comfy-user": users["bob"]})
        assert refused.status_code == 400 and "alice-relay" in refused.text, "bob has no such gateway"
        assert len(relay.submits) == 1 and relay.cluster_requests == []
    assert not any(relay.api_key in line for line in shared_comfy.log_path.read_text().splitlines())
