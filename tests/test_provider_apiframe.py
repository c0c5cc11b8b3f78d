"""Apiframe against a loopback Apiframe: fluxParams, the job lifecycle, its errors and its credits."""

from __future__ import annotations

import base64
import io
import uuid

import httpx
import numpy as np
import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.keys import ApiKey
from comfyui_flux2_flex.nodes.engine.providers.apiframe import ApiframeProvider
from comfyui_flux2_flex.nodes.engine.errors import SubmitOutcomeUnknown
from comfyui_flux2_flex.nodes.engine.request import FlexRequest
from comfyui_flux2_flex.nodes.engine.runner import RunHooks, generate, prepare

from fakes.apiframe_server import JobPlan
from fakes.loopback import Response
from provider_runs import FAST, picture, run


@pytest.fixture
def name() -> str:
    """The provider these tests are about (the conftest fixtures `fake` and `provider` follow it)."""
    return "apiframe"


def test_a_request_becomes_fluxparams_with_ten_references_as_data_uris(fake, provider) -> None:
    images = tuple(picture(64 + index, 48, index * 20) for index in range(10))
    request = FlexRequest(prompt="poster", width=512, height=384, steps=20, guidance=3.5, seed=11,
                          output_format="jpeg", prompt_upsampling=False, images=images)
    result = run(provider, request)
    assert result.pixels.shape == (384, 512, 3) and result.seed == 11
    body = fake.submits[0].json()
    references = body["fluxParams"].pop("input_images")
    assert body == {"prompt": "poster", "model": "flux-2-flex", "fluxParams": {
        "aspect_ratio": "custom", "width": 512, "height": 384, "steps": 20, "guidance": 3.5, "seed": 11,
        "output_format": "jpg", "prompt_upsampling": False}}
    assert len(references) == 10
    for index, uri in enumerate(references):
        assert uri.startswith("data:image/png;base64,")  # Apiframe documents no other format
        with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as sent:
            assert sent.size == (64 + index, 48)
            assert np.array_equal(np.asarray(sent.convert("RGB")), images[index].pixels)


def test_the_finished_jobs_credit_cost_is_reported_beside_an_unknown_price(fake, provider) -> None:
    result = run(provider)
    assert result.reported_cost == 12 and not result.estimate.known
    report = result.report()
    assert "apiframe reported 12 credits" in report and "price unknown (Apiframe bills in its own credits" in report


def test_without_a_size_the_output_follows_the_first_image_at_the_nearest_resolution(fake, provider) -> None:
    request = FlexRequest(prompt="edit", width=None, height=None, images=(picture(400, 300),))
    prepared = prepare(request, provider)
    assert any("at 0.5 MP, the nearest of Apiframe's resolutions" in note for note in prepared.notes)
    result = generate(prepared, provider, settings=FAST)
    params = fake.submits[0].json()["fluxParams"]
    assert params["aspect_ratio"] == "match_input_image" and params["resolution"] == "0.5 MP"
    assert "width" not in params and "height" not in params
    height, width = result.pixels.shape[:2]
    assert abs(width / height - 4 / 3) < 0.01


def test_each_submit_carries_its_own_uuid4_idempotency_key(fake, provider) -> None:
    run(provider)
    run(provider)
    keys = [request.headers["idempotency-key"] for request in fake.submits]
    assert len(set(keys)) == 2 and all(uuid.UUID(key).version == 4 for key in keys)
    assert all(r.headers["x-api-key"] == fake.api_key for r in fake.api.requests)


@pytest.mark.parametrize("shape", ["url", "images", "image_objects"])
def test_every_documented_result_shape_is_downloaded_without_the_key(fake, provider, shape) -> None:
    fake.plans.append(JobPlan(result_shape=shape))
    assert run(provider).pixels.shape == (256, 320, 3)
    (download,) = fake.delivery.requests
    assert "x-api-key" not in download.headers and fake.api_key not in str(download.headers)


def test_progress_percentages_become_fractions_and_polls_use_the_job_url(fake, provider) -> None:
    fake.plans.append(JobPlan(statuses=["QUEUED", "PROCESSING", "PROCESSING", "COMPLETED"]))
    seen: list[tuple[float | None, str]] = []
    task_id = run(provider, hooks=RunHooks(on_progress=lambda f, s: seen.append((f, s)))).task_id
    assert ("PROCESSING" in {status for _, status in seen}) and (0.5, "PROCESSING") in seen
    assert all(f is None or 0.0 <= f <= 1.0 for f, _ in seen)
    assert [r.path for r in fake.polls] == [f"/v2/jobs/{task_id}"] * 4


@pytest.mark.parametrize("error", ["GPU worker crashed", {"code": "E500", "message": "GPU worker crashed"}])
def test_a_failed_job_shows_the_reason_and_that_credits_come_back(fake, provider, error) -> None:
    fake.plans.append(JobPlan(statuses=["QUEUED", "FAILED"], error=error))
    with pytest.raises(errors.GenerationFailedError, match="failed: GPU worker crashed. Apiframe refunds") as caught:
        run(provider)
    assert caught.value.billed == errors.REFUNDED and caught.value.task_id in fake.jobs
    assert len(fake.submits) == 1


def test_a_job_failed_in_moderation_is_a_moderation_error(fake, provider) -> None:
    fake.plans.append(JobPlan(statuses=["PROCESSING", "FAILED"], error="NSFW content detected in output"))
    with pytest.raises(errors.ModeratedError, match="refused task .* in moderation: NSFW content") as caught:
        run(provider)
    assert caught.value.reasons == ("NSFW content detected in output",) and caught.value.task_id in fake.jobs


@pytest.mark.parametrize(
    ("key", "error", "words"),
    [
        ("afk_wrong_key_999", errors.AuthenticationError, r"\(HTTP 401\): Invalid API key"),
        ("afk_paused_key_000", errors.AuthenticationError, r"\(HTTP 403\): API key is inactive"),
    ],
)
def test_refused_keys_say_so_without_showing_the_key(fake, key, error, words) -> None:
    provider = ApiframeProvider(base_url=fake.api_url, api_key=ApiKey(key))
    with pytest.raises(error, match=words) as caught:
        run(provider)
    assert key not in str(caught.value) and not fake.jobs
    assert (caught.value.provider, caught.value.billed) == ("apiframe", errors.NOT_BILLED)


def test_a_request_without_key_header_is_refused_by_the_stand_in(fake) -> None:
    answer = httpx.post(fake.api_url + "/v2/images/generate", json={"prompt": "p", "model": "flux-2-flex"})
    assert answer.status_code == 401 and answer.json() == {"error": "API key is required"}


def test_no_credits_is_a_402_with_apiframes_words(fake, provider) -> None:
    fake.submit_script.append(Response.json({"error": "Insufficient credits"}, 402))
    with pytest.raises(errors.InsufficientCreditsError, match="Insufficient credits"):
        run(provider)


def test_a_400_shows_apiframes_validation_message(fake, provider) -> None:
    with pytest.raises(errors.ProviderRejectedError, match="HTTP 400.*fluxParams.steps must be between 1 and 50"):
        provider.submit(FlexRequest(prompt="p", steps=99))  # past our own validation, as a stale range would be
    assert not fake.jobs


def test_a_202_without_job_id_is_never_resubmitted(fake, provider) -> None:
    fake.submit_script.append(Response.json({"status": "QUEUED"}, 202))
    with pytest.raises(errors.ProviderUnavailableError, match="may be billed"):
        run(provider)
    fake.submit_script.append(Response(202, b"<html>queued</html>"))
    with pytest.raises(SubmitOutcomeUnknown):
        run(provider)
    assert len(fake.submits) == 2


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (FlexRequest(prompt="x" * 2001), "prompt = '2001 characters' is not allowed: at most 2000 characters"),
        (FlexRequest(prompt="p", width=128, height=512), "width = 128 is not allowed: from 256 to 2048 on Apiframe"),
        (FlexRequest(prompt="p", width=2560, height=1600), "width = 2560 is not allowed: from 256 to 2048"),
        (FlexRequest(prompt="p", images=tuple(picture(64, 64) for _ in range(11))), "at most 10 images"),
    ],
)
def test_out_of_range_settings_are_refused_before_sending(fake, provider, request_, words) -> None:
    with pytest.raises(errors.InvalidRequestError, match=words.replace("(", r"\(")):
        prepare(request_, provider)
    assert fake.all_requests() == []


def test_settings_apiframe_cannot_honour_are_named_in_notes(provider) -> None:
    assert prepare(FlexRequest(prompt="p"), provider).notes == ()
    notes = prepare(FlexRequest(prompt="p", width=1040, height=1024, safety_tolerance=5), provider).notes
    assert any("safety_tolerance 5 cannot be set on Apiframe" in note for note in notes)
    assert any("1040x1024 is not a multiple of 32" in note for note in notes)
    assert "safety_tolerance" not in provider.dry_run_body(FlexRequest(prompt="p", safety_tolerance=5))["fluxParams"]
