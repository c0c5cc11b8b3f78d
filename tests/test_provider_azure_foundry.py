"""Microsoft Foundry's BFL route against a loopback Foundry resource: the endpoint and key from
the environment or the stored settings, what is sent, every way a request ends, and that an
answer lost after the request went out is never paid for twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.errors import SubmitOutcomeUnknown
from comfyui_flux2_flex.nodes.engine.cli import main
from comfyui_flux2_flex.nodes.engine.keys import ApiKey
from comfyui_flux2_flex.nodes.engine.providers import STORED_ENV_VARS, make_provider
from comfyui_flux2_flex.nodes.engine.providers.azure_foundry import AzureFoundryProvider
from comfyui_flux2_flex.nodes.engine.request import FlexRequest
from comfyui_flux2_flex.nodes.engine.runner import RunHooks, generate, prepare
from comfyui_flux2_flex.nodes.logic.key_store import KeyStore
from comfyui_flux2_flex.nodes.logic.node_runs import NodeSettings, check_settings, estimate_cost, run_settings
from comfyui_flux2_flex.nodes.logic.price_preview import preview_price

from comfyui_runner import needs_comfyui
from fakes.azure_foundry_server import ROUTE, error
from fakes.loopback import Response
from provider_runs import FAST, picture, run


@pytest.fixture
def name() -> str:
    """The provider these tests are about (the conftest fixtures `fake` and `provider` follow it)."""
    return "azure-foundry"


def test_endpoint_and_key_from_the_environment_reach_the_bfl_route(fake, monkeypatch) -> None:
    monkeypatch.setenv("AZURE_FOUNDRY_ENDPOINT", fake.api_url)
    monkeypatch.setenv("AZURE_FOUNDRY_API_KEY", fake.api_key)
    result = run(make_provider("azure-foundry"))
    assert result.pixels.shape == (256, 320, 3) and result.seed == 7
    (post,) = fake.resource.requests
    assert (post.method, post.path, post.query) == ("POST", ROUTE, {"api-version": "preview"})
    assert post.headers["authorization"] == f"Bearer {fake.api_key}"
    assert "azure-foundry: price unknown" in result.report()


def test_every_setting_is_mapped_to_bfls_fields_under_the_deployment_name(fake, monkeypatch) -> None:
    fake.deployment = "flux-flex-studio"
    monkeypatch.setenv("AZURE_FOUNDRY_DEPLOYMENT", "flux-flex-studio")
    provider = AzureFoundryProvider(base_url=fake.api_url, api_key=ApiKey(fake.api_key))
    run(provider, FlexRequest(prompt="p", width=512, height=384, steps=12, guidance=3.5, seed=11,
                              safety_tolerance=4, output_format="jpeg", prompt_upsampling=True))
    assert fake.generated == [{
        "model": "flux-flex-studio", "prompt": "p", "steps": 12, "guidance": 3.5, "safety_tolerance": 4,
        "output_format": "jpeg", "prompt_upsampling": True, "width": 512, "height": 384, "seed": 11}]


def test_ten_references_go_as_raw_base64_and_eleven_are_refused(fake, provider) -> None:
    result = run(provider, FlexRequest(prompt="p", width=None, height=None,
                                      images=(picture(96, 64),) + (picture(32, 32),) * 9))
    (body,) = fake.generated
    assert "width" not in body and [key for key in body if key.startswith("input_image")][-1] == "input_image_10"
    assert result.pixels.shape == (64, 96, 3)  # BFL follows the first image
    with pytest.raises(errors.InvalidRequestError, match="at most 10 images"):
        prepare(FlexRequest(prompt="p", width=256, height=256, images=(picture(32, 32),) * 11), provider)
    assert len(fake.submits) == 1


def test_settings_foundry_cannot_honour_are_sent_as_the_nearest_with_notes(fake, provider) -> None:
    prepared = prepare(FlexRequest(prompt="p", width=256, height=256, output_format="webp", prompt_upsampling=False),
                       provider)
    assert prepared.notes == (
        "Microsoft Foundry cannot encode webp: the image comes back as png",
        "prompt_upsampling off was sent, but Microsoft's page does not list it for FLUX.2-flex: Foundry may ignore "
        "it and rewrite the prompt anyway",
    )
    generate(prepared, provider, settings=FAST)
    assert fake.generated[0]["output_format"] == "png"


def test_a_link_in_the_answer_is_downloaded_without_the_key(fake, provider) -> None:
    fake.url_results = True
    assert run(provider).pixels.shape == (256, 320, 3)
    (download,) = fake.blob.requests
    assert "authorization" not in download.headers and fake.api_key not in str(download.headers)


def test_the_endpoint_can_be_stored_like_a_key(fake, tmp_path, monkeypatch) -> None:
    keys_file = tmp_path / "keys.json"
    store = KeyStore(keys_file, tuple(STORED_ENV_VARS))
    store.save("azure-foundry", fake.api_key)
    store.save("azure-foundry-endpoint", fake.api_url)
    monkeypatch.setenv("FLUX_FLEX_KEYS_FILE", str(keys_file))
    assert run(make_provider("azure-foundry")).pixels.shape == (256, 320, 3)
    assert store.names()["azure-foundry-endpoint"] == ["default"] and fake.api_url in keys_file.read_text()


def test_a_pasted_full_route_url_is_used_as_it_is(fake) -> None:
    provider = AzureFoundryProvider(base_url=fake.api_url + ROUTE + "?api-version=preview",
                                    api_key=ApiKey(fake.api_key))
    run(provider)
    assert fake.resource.requests[0].path == ROUTE


def test_without_an_endpoint_nothing_is_sent_and_the_cli_shows_a_dry_run(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("AZURE_FOUNDRY_API_KEY", "a-key")
    with pytest.raises(errors.MissingApiKeyError, match="No endpoint for azure-foundry: .*AZURE_FOUNDRY_ENDPOINT"):
        run(make_provider("azure-foundry"))
    assert main(["generate", "--provider", "azure-foundry", "--prompt", "fox", "--out", str(tmp_path / "x.png")]) == 0
    captured = capsys.readouterr()
    assert "No endpoint for azure-foundry" in captured.err
    assert "https://<resource>.services.ai.azure.com" in captured.out
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("endpoint", ["http://example.services.ai.azure.com", "ftp://example.com", "example.com"])
def test_an_endpoint_that_is_not_https_is_refused_before_sending(endpoint) -> None:
    with pytest.raises(errors.InvalidRequestError, match="AZURE_FOUNDRY_ENDPOINT = .*an https URL"):
        prepare(FlexRequest(prompt="p"), AzureFoundryProvider(base_url=endpoint, api_key=ApiKey("k")))


@pytest.mark.parametrize(
    "answer",
    [
        error(400, "content_filter", "The response was filtered due to the prompt triggering content management "
                                     "policy.", inner_code="ResponsibleAIPolicyViolation"),
        error(400, "BadRequest", "Request Moderated: Derivative Works Filter"),
    ],
)
def test_a_filtered_prompt_is_a_moderated_error(fake, provider, answer) -> None:
    fake.submit_script.append(answer)
    with pytest.raises(errors.ModeratedError, match="refused the request in its content filter") as caught:
        run(provider)
    assert caught.value.stage == "request" and len(fake.submits) == 1


def test_an_image_withheld_by_the_content_filter_is_moderation(fake, provider) -> None:
    fake.submit_script.append(Response.json({"created": 1, "data": [
        {"content_filter_results": {"sexual": {"filtered": True, "severity": "high"}}}]}))
    with pytest.raises(errors.ModeratedError, match="withheld the image") as caught:
        run(provider)
    assert caught.value.stage == "content"


@pytest.mark.parametrize(
    ("answer", "error_type", "words"),
    [
        (error(401, "401", "Access denied due to invalid subscription key."), errors.AuthenticationError,
         "refused the credentials .*Entra ID token expires"),
        (error(403, "PermissionDenied", "The principal lacks the required data action."), errors.AuthenticationError,
         "HTTP 403.*registration"),
        (error(404, "DeploymentNotFound", "The API deployment for this resource does not exist."),
         errors.ProviderRejectedError, "no FLUX.2-flex deployment .*AZURE_FOUNDRY_ENDPOINT"),
        (error(400, "BadRequest", "steps must be between 1 and 50."), errors.ProviderRejectedError,
         "HTTP 400.*steps must be"),
        (error(503, "ServiceUnavailable", "The service is temporarily unable to process your request."),
         SubmitOutcomeUnknown, "HTTP 503.*not resent automatically"),  # no Azure page says nothing was made
        (Response.json({"created": 1, "data": [{}]}), SubmitOutcomeUnknown,
         "without an image. It may have been billed"),
        (Response(200, b"<html>gateway</html>"), SubmitOutcomeUnknown, "may have been created"),
    ],
)
def test_each_failure_has_its_own_words_and_is_sent_once(fake, provider, answer, error_type, words) -> None:
    fake.submit_script.append(answer)
    with pytest.raises(error_type, match=words):
        run(provider)
    assert len(fake.submits) == 1 and fake.generated == []


def test_a_rate_limit_with_azures_words_waits_and_sends_again(fake, provider) -> None:
    busy = error(429, "429", "Requests to the deployment have exceeded the rate limit.")
    busy.headers["Retry-After"] = "0.1"
    fake.submit_script.append(busy)
    run(provider)
    assert len(fake.submits) == 2 and len(fake.generated) == 1


def test_cli_generates_with_foundry(fake, monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("AZURE_FOUNDRY_API_KEY", fake.api_key)
    monkeypatch.setenv("FLUX_FLEX_AZURE_FOUNDRY_URL", fake.api_url)
    out_file = tmp_path / "x.png"
    assert main(["generate", "--provider", "azure-foundry", "--prompt", "fox", "--width", "320", "--height", "256",
                 "--seed", "5", "--output-format", "webp", "--out", str(out_file)]) == 0
    with Image.open(out_file) as saved:
        assert saved.size == (320, 256)
    out = capsys.readouterr().out
    assert "azure-foundry: price unknown" in out and "seed 5" in out and "comes back as png" in out
    assert fake.api_key not in out and fake.generated[0]["seed"] == 5


def test_chosen_on_the_node_it_validates_without_an_endpoint_and_runs_with_one(fake, monkeypatch) -> None:
    node = NodeSettings(provider="azure-foundry", prompt="a poster", width=256, height=192, seed=42, batch_size=2)
    assert check_settings(node) is None and estimate_cost(node).usd is None
    assert preview_price(node).text == "price unknown: see Cost Management in the Azure portal · 256x192"
    monkeypatch.setenv("AZURE_FOUNDRY_ENDPOINT", fake.api_url)
    monkeypatch.setenv("AZURE_FOUNDRY_API_KEY", fake.api_key)
    result = run_settings(node, RunHooks())
    assert tuple(result.images.shape) == (2, 192, 256, 3)
    assert sorted(body["seed"] for body in fake.generated) == [42, 43]
    assert "price unknown" in result.report and fake.api_key not in result.report


@needs_comfyui
def test_the_settings_dialog_stores_the_endpoint_next_to_the_keys(comfy) -> None:
    """In a real ComfyUI (skipped without COMFYUI_PATH): the key route takes the endpoint too."""
    endpoint = "https://studio.services.ai.azure.com"
    response = comfy.client.post("/flux2_flex/keys", json={"provider": "azure-foundry-endpoint", "key": endpoint},
                                 headers=comfy.key_headers())
    assert response.status_code == 200
    status = response.json()
    assert status["azure-foundry-endpoint"]["stored"] is True
    assert status["azure-foundry-endpoint"]["env_var"] == "AZURE_FOUNDRY_ENDPOINT"
    assert status["azure-foundry"]["env_var"] == "AZURE_FOUNDRY_API_KEY" and "openrouter" in status
    # An option, not a provider: the form lists it apart, and shows its value (it is not a secret).
    assert status["azure-foundry-endpoint"]["option_of"] == "azure-foundry"
    assert status["azure-foundry-endpoint"]["value"] == endpoint and "option_of" not in status["azure-foundry"]
    assert endpoint in (comfy.root / "user" / "flux2_flex" / "keys.json").read_text()
