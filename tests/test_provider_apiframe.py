"""Apiframe against a loopback Apiframe: fluxParams, the job lifecycle, its errors and its credits."""

from __future__ import annotations

import base64
import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.cli import main
from comfyui_flux2_flex.nodes.engine.keys import ApiKey
from comfyui_flux2_flex.nodes.engine.providers.apiframe import ApiframeProvider
from comfyui_flux2_flex.nodes.engine.errors import SubmitOutcomeUnknown
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage
from comfyui_flux2_flex.nodes.engine.runner import RunHooks, RunSettings, generate, prepare

from fakes.apiframe_server import FakeApiframe, JobPlan
from fakes.loopback import Response

FAST = RunSettings(submit_retry_seconds=5.0, task_timeout_seconds=10.0)


@pytest.fixture
def apiframe() -> Iterator[FakeApiframe]:
    with FakeApiframe(inactive_keys=("afk_paused_key_000",)) as server:
        yield server


@pytest.fixture
def provider(apiframe: FakeApiframe) -> ApiframeProvider:
    return ApiframeProvider(base_url=apiframe.api_url, api_key=ApiKey(apiframe.api_key))


def run(provider: ApiframeProvider, request: FlexRequest | None = None, **kwargs):
    request = request or FlexRequest(prompt="a lighthouse", width=256, height=320, seed=7)
    return generate(prepare(request, provider), provider, settings=kwargs.pop("settings", FAST), **kwargs)


def picture(width: int, height: int, value: int = 90) -> InputImage:
    return InputImage(np.full((height, width, 3), value, np.uint8))


def test_a_request_becomes_fluxparams_with_ten_references_as_data_uris(apiframe, provider) -> None:
    images = tuple(picture(64 + index, 48, index * 20) for index in range(10))
    request = FlexRequest(prompt="poster", width=512, height=384, steps=20, guidance=3.5, seed=11,
                          output_format="jpeg", prompt_upsampling=False, images=images)
    result = run(provider, request)
    assert result.pixels.shape == (384, 512, 3) and result.seed == 11
    body = apiframe.submits[0].json()
    references = body["fluxParams"].pop("input_images")
    assert body == {"prompt": "poster", "model": "flux-2-flex", "fluxParams": {
        "aspect_ratio": "custom", "width": 512, "height": 384, "steps": 20, "guidance": 3.5, "seed": 11,
        "output_format": "jpg", "prompt_upsampling": False}}
    assert len(references) == 10
    for index, uri in enumerate(references):
        assert uri.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as sent:
            assert sent.size == (64 + index, 48)


def test_the_finished_jobs_credit_cost_is_reported_beside_an_unknown_price(apiframe, provider) -> None:
    result = run(provider)
    assert result.reported_cost == 12 and not result.estimate.known
    report = result.report()
    assert "apiframe reported 12 credits" in report and "price unknown (Apiframe bills in its own credits" in report


def test_without_a_size_the_output_follows_the_first_image_at_the_nearest_resolution(apiframe, provider) -> None:
    request = FlexRequest(prompt="edit", width=None, height=None, images=(picture(400, 300),))
    prepared = prepare(request, provider)
    assert any("at 0.5 MP, the nearest of Apiframe's resolutions" in note for note in prepared.notes)
    result = generate(prepared, provider, settings=FAST)
    params = apiframe.submits[0].json()["fluxParams"]
    assert params["aspect_ratio"] == "match_input_image" and params["resolution"] == "0.5 MP"
    assert "width" not in params and "height" not in params
    height, width = result.pixels.shape[:2]
    assert abs(width / height - 4 / 3) < 0.01


def test_each_submit_carries_its_own_uuid4_idempotency_key(apiframe, provider) -> None:
    run(provider)
    run(provider)
    keys = [request.headers["idempotency-key"] for request in apiframe.submits]
    assert len(set(keys)) == 2 and all(uuid.UUID(key).version == 4 for key in keys)
    assert all(r.headers["x-api-key"] == apiframe.api_key for r in apiframe.api.requests)


@pytest.mark.parametrize("shape", ["url", "images", "image_objects"])
def test_every_documented_result_shape_is_downloaded_without_the_key(apiframe, provider, shape) -> None:
    apiframe.plans.append(JobPlan(result_shape=shape))
    assert run(provider).pixels.shape == (320, 256, 3)
    (download,) = apiframe.delivery.requests
    assert "x-api-key" not in download.headers and apiframe.api_key not in str(download.headers)


def test_progress_percentages_become_fractions_and_polls_use_the_job_url(apiframe, provider) -> None:
    apiframe.plans.append(JobPlan(statuses=["QUEUED", "PROCESSING", "PROCESSING", "COMPLETED"]))
    seen: list[tuple[float | None, str]] = []
    task_id = run(provider, hooks=RunHooks(on_progress=lambda f, s: seen.append((f, s)))).task_id
    assert ("PROCESSING" in {status for _, status in seen}) and (0.5, "PROCESSING") in seen
    assert all(f is None or 0.0 <= f <= 1.0 for f, _ in seen)
    assert [r.path for r in apiframe.polls] == [f"/v2/jobs/{task_id}"] * 4


@pytest.mark.parametrize("error", ["GPU worker crashed", {"code": "E500", "message": "GPU worker crashed"}])
def test_a_failed_job_shows_the_reason_and_that_credits_come_back(apiframe, provider, error) -> None:
    apiframe.plans.append(JobPlan(statuses=["QUEUED", "FAILED"], error=error))
    with pytest.raises(errors.GenerationFailedError, match="failed: GPU worker crashed. Apiframe refunds"):
        run(provider)
    assert len(apiframe.submits) == 1


def test_a_job_failed_in_moderation_is_a_moderation_error(apiframe, provider) -> None:
    apiframe.plans.append(JobPlan(statuses=["PROCESSING", "FAILED"], error="NSFW content detected in output"))
    with pytest.raises(errors.ModeratedError, match="refused task .* in moderation: NSFW content") as caught:
        run(provider)
    assert caught.value.reasons == ("NSFW content detected in output",) and caught.value.task_id in apiframe.jobs


@pytest.mark.parametrize(
    ("key", "error", "words"),
    [
        ("afk_wrong_key_999", errors.AuthenticationError, r"\(HTTP 401\): Invalid API key"),
        ("afk_paused_key_000", errors.AuthenticationError, r"\(HTTP 403\): API key is inactive"),
    ],
)
def test_refused_keys_say_so_without_showing_the_key(apiframe, key, error, words) -> None:
    provider = ApiframeProvider(base_url=apiframe.api_url, api_key=ApiKey(key))
    with pytest.raises(error, match=words) as caught:
        run(provider)
    assert key not in str(caught.value) and not apiframe.jobs


def test_a_request_without_key_header_is_refused_by_the_stand_in(apiframe) -> None:
    answer = httpx.post(apiframe.api_url + "/v2/images/generate", json={"prompt": "p", "model": "flux-2-flex"})
    assert answer.status_code == 401 and answer.json() == {"error": "API key is required"}


def test_no_credits_is_a_402_with_apiframes_words(apiframe, provider) -> None:
    apiframe.submit_script.append(Response.json({"error": "Insufficient credits"}, 402))
    with pytest.raises(errors.InsufficientCreditsError, match="Insufficient credits"):
        run(provider)


def test_a_400_shows_apiframes_validation_message(apiframe, provider) -> None:
    with pytest.raises(errors.ProviderRejectedError, match="HTTP 400.*fluxParams.steps must be between 1 and 50"):
        provider.submit(FlexRequest(prompt="p", steps=99))  # past our own validation, as a stale range would be
    assert not apiframe.jobs


def test_429_waits_and_submits_again_once_nothing_was_created(apiframe, provider) -> None:
    apiframe.submit_script.append(Response.json({"error": "Too many requests"}, 429, {"Retry-After": "0.1"}))
    run(provider)
    assert len(apiframe.submits) == 2 and len(apiframe.jobs) == 1


def test_a_5xx_while_polling_keeps_polling_the_same_job(apiframe, provider) -> None:
    apiframe.plans.append(JobPlan(statuses=["QUEUED", "PROCESSING", "PROCESSING", "COMPLETED"],
                                  poll_http_errors={1: 502, 2: 500}))
    assert run(provider).pixels.shape == (320, 256, 3)
    assert len(apiframe.submits) == 1 and len(apiframe.polls) == 4  # QUEUED, 502, 500, COMPLETED


def test_a_202_without_job_id_is_never_resubmitted(apiframe, provider) -> None:
    apiframe.submit_script.append(Response.json({"status": "QUEUED"}, 202))
    with pytest.raises(errors.ProviderUnavailableError, match="may be billed"):
        run(provider)
    apiframe.submit_script.append(Response(202, b"<html>queued</html>"))
    with pytest.raises(SubmitOutcomeUnknown):
        run(provider)
    assert len(apiframe.submits) == 2


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (FlexRequest(prompt="x" * 2001), "prompt = '2001 characters' is not allowed: at most 2000 characters"),
        (FlexRequest(prompt="p", width=128, height=512), "width = 128 is not allowed: from 256 to 2048 on Apiframe"),
        (FlexRequest(prompt="p", width=2560, height=1600), "width = 2560 is not allowed: from 256 to 2048"),
        (FlexRequest(prompt="p", images=tuple(picture(64, 64) for _ in range(11))), "at most 10 images"),
    ],
)
def test_out_of_range_settings_are_refused_before_sending(apiframe, provider, request_, words) -> None:
    with pytest.raises(errors.InvalidRequestError, match=words.replace("(", r"\(")):
        prepare(request_, provider)
    assert apiframe.all_requests() == []


def test_settings_apiframe_cannot_honour_are_named_in_notes(provider) -> None:
    assert prepare(FlexRequest(prompt="p"), provider).notes == ()
    notes = prepare(FlexRequest(prompt="p", width=1040, height=1024, safety_tolerance=5), provider).notes
    assert any("safety_tolerance 5 cannot be set on Apiframe" in note for note in notes)
    assert any("1040x1024 is not a multiple of 32" in note for note in notes)
    assert "safety_tolerance" not in provider.build_body(FlexRequest(prompt="p", safety_tolerance=5))["fluxParams"]


def test_the_key_never_appears_in_errors_logs_or_reports(apiframe, provider, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    texts = [repr(provider), str(vars(provider))]
    apiframe.submit_script.append(Response.json({"error": "bad"}, 400))
    apiframe.plans.append(JobPlan(statuses=["FAILED"], error="boom"))
    for _ in range(2):
        with pytest.raises(errors.FluxFlexError) as caught:
            run(provider)
        texts.append(str(caught.value))
    texts += [run(provider).report(), caplog.text]
    assert "/v2/jobs/" in caplog.text
    assert not [text for text in texts if apiframe.api_key in text]


def test_the_cli_generates_through_apiframe(apiframe, monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("APIFRAME_API_KEY", apiframe.api_key)
    monkeypatch.setenv("FLUX_FLEX_APIFRAME_URL", apiframe.api_url)
    out_file = tmp_path / "x.png"
    assert main(["generate", "--provider", "apiframe", "--prompt", "lighthouse", "--width", "320", "--height", "256",
                 "--seed", "5", "--safety-tolerance", "4", "--out", str(out_file)]) == 0
    with Image.open(out_file) as saved:
        assert saved.size == (320, 256) and saved.format == "PNG"
    out = capsys.readouterr().out
    assert "apiframe reported 12 credits" in out and "safety_tolerance 4 cannot be set" in out
    assert apiframe.api_key not in out
