"""OpenRouter, Microsoft Foundry and the gateways inside a real ComfyUI, as a user runs them: chosen
on the node, the key from the environment (or, for a gateway the user adds in the settings, stored
there), and the key never in the saved PNG, the workflow or ComfyUI's log.

Needs COMFYUI_PATH and COMFYUI_PYTHON (see comfyui_runner); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine.providers import PROVIDER_CLASSES
from comfyui_flux2_flex.nodes.engine.providers.gateway_profiles import profile_from_mapping
from comfyui_runner import ComfyUI, needs_comfyui
from fakes.bfl_gateway_server import FakeBflGateway
from fakes.bfl_server import FakeBfl
from fakes.stand_ins import STAND_INS
from workflow_format import TEXT_TO_IMAGE, load, to_api_prompt

pytestmark = needs_comfyui
# Answered at once: OpenRouter and Foundry with the image, APIYI with BFL's delivery link.
SYNCHRONOUS_PROVIDERS = ("openrouter", "azure-foundry", "apiyi")
MY_GATEWAY = {"family": "bfl", "label": "My relay", "origin": "https://relay.example.com", "prefix": "/flux/v1",
              "model": "flux-2-flex", "answer_form": "poll"}


def typography_prompt(comfy: ComfyUI, provider: str) -> tuple[dict, dict]:
    """The typography example as ComfyUI's page queues it, with `provider` chosen on its Generate node."""
    workflow = load(TEXT_TO_IMAGE)
    prompt = to_api_prompt(workflow, comfy.client.get("/object_info").json())
    next(node for node in prompt.values() if node["class_type"] == "FluxFlexGenerate")["inputs"]["provider"] = provider
    return workflow, prompt


def assert_key_kept_out(comfy: ComfyUI, entry: dict, key: str, workflow: dict, prompt: dict) -> None:
    saved = [image for output in entry["outputs"].values() for image in output.get("images", [])]
    assert saved
    for image in saved:
        with Image.open(comfy.root / "output" / image["subfolder"] / image["filename"]) as picture:
            chunks = " ".join(str(value) for value in picture.text.values())
        assert "workflow" in picture.text and key not in chunks
    assert key not in json.dumps(workflow) + json.dumps(prompt)
    assert key not in comfy.log_path.read_text()


@pytest.mark.parametrize("provider", SYNCHRONOUS_PROVIDERS)
def test_the_text_to_image_example_runs_on_the_provider_and_its_key_stays_out_of_what_is_saved(
        provider: str, comfy_bfl: FakeBfl, tmp_path: Path) -> None:
    provider_class = PROVIDER_CLASSES[provider]
    with STAND_INS[provider].start() as fake:
        env = {provider_class.key_env_var: fake.api_key, provider_class.base_url_env_var(): fake.api_url}
        comfy = ComfyUI(tmp_path, comfy_bfl, extra_env=env)
        try:
            comfy.wait_until_up()
            workflow, prompt = typography_prompt(comfy, provider)
            entry = comfy.run(prompt, workflow)
            assert entry["status"]["status_str"] == "success", entry["status"]
            assert len(fake.submits) == 1 and len(comfy_bfl.submits) == 0, "the chosen provider, once"
            assert_key_kept_out(comfy, entry, fake.api_key, workflow, prompt)
        finally:
            comfy.stop()


def test_a_gateway_added_in_the_settings_is_offered_on_the_node_and_runs_with_its_stored_key(
        comfy_bfl: FakeBfl, tmp_path: Path) -> None:
    with FakeBflGateway(profile_from_mapping("my-relay", MY_GATEWAY), polling_url_mode="foreign") as gateway:
        comfy = ComfyUI(tmp_path, comfy_bfl, extra_env={"FLUX_FLEX_MY_RELAY_URL": gateway.api_url})
        try:
            comfy.wait_until_up()
            refused = comfy.client.post("/flux2_flex/gateways", json={"name": "my-relay", "profile": MY_GATEWAY},
                                        headers={"Origin": comfy.url})
            bad = comfy.client.post("/flux2_flex/gateways", headers=comfy.key_headers(),
                                    json={"name": "my-relay", "profile": {**MY_GATEWAY, "family": "grpc"}})
            stored = comfy.client.post("/flux2_flex/gateways", headers=comfy.key_headers(),
                                       json={"name": "my-relay", "profile": MY_GATEWAY})
            key = comfy.client.post("/flux2_flex/keys", headers=comfy.key_headers(),
                                    json={"provider": "my-relay", "key": gateway.api_key})
            assert (refused.status_code, bad.status_code, stored.status_code, key.status_code) == (403, 400, 200, 200)
            assert "gateway my-relay: family" in bad.json()["error"]
            assert (tmp_path / "user" / "flux2_flex" / "gateways.json").is_file()
            workflow, prompt = typography_prompt(comfy, "my-relay")  # offered at once: no restart
            entry = comfy.run(prompt, workflow)
            assert entry["status"]["status_str"] == "success", entry["status"]
            assert len(gateway.submits) == 1 and gateway.cluster_requests == [] and not comfy_bfl.submits
            assert_key_kept_out(comfy, entry, gateway.api_key, workflow, prompt)
            _, unknown = typography_prompt(comfy, "friends-gateway")
            answer = comfy.queue(unknown)
            assert answer.status_code == 400 and "friends-gateway" in answer.text and not comfy_bfl.submits
        finally:
            comfy.stop()

