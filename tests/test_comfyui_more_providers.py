"""OpenRouter and Microsoft Foundry inside a real ComfyUI, as a user runs them: chosen on the node,
the key from the environment, and the key never in the saved PNG, the workflow or ComfyUI's log.

Needs COMFYUI_PATH and COMFYUI_PYTHON (see comfyui_runner); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine.providers import PROVIDER_CLASSES
from comfyui_runner import ComfyUI, needs_comfyui
from fakes.bfl_server import FakeBfl
from fakes.stand_ins import STAND_INS
from workflow_format import TEXT_TO_IMAGE, load, to_api_prompt

pytestmark = needs_comfyui
SYNCHRONOUS_PROVIDERS = ("openrouter", "azure-foundry")


@pytest.mark.parametrize("provider", SYNCHRONOUS_PROVIDERS)
def test_the_text_to_image_example_runs_on_the_provider_and_its_key_stays_out_of_what_is_saved(
        provider: str, comfy_bfl: FakeBfl, tmp_path: Path) -> None:
    provider_class = PROVIDER_CLASSES[provider]
    with STAND_INS[provider].start() as fake:
        env = {provider_class.key_env_var: fake.api_key, provider_class.base_url_env_var(): fake.api_url}
        comfy = ComfyUI(tmp_path, comfy_bfl, extra_env=env)
        try:
            comfy.wait_until_up()
            workflow = load(TEXT_TO_IMAGE)
            prompt = to_api_prompt(workflow, comfy.client.get("/object_info").json())
            next(node for node in prompt.values() if node["class_type"] == "FluxFlexGenerate")["inputs"]["provider"] = \
                provider
            entry = comfy.run(prompt, workflow)
            assert entry["status"]["status_str"] == "success", entry["status"]
            assert len(fake.submits) == 1 and len(comfy_bfl.submits) == 0, "the chosen provider, once"
            saved = [image for output in entry["outputs"].values() for image in output.get("images", [])]
            assert saved
            for image in saved:
                with Image.open(comfy.root / "output" / image["subfolder"] / image["filename"]) as picture:
                    chunks = " ".join(str(value) for value in picture.text.values())
                assert "workflow" in picture.text and fake.api_key not in chunks
            assert fake.api_key not in json.dumps(workflow) + json.dumps(prompt)
            assert fake.api_key not in comfy.log_path.read_text()
        finally:
            comfy.stop()
