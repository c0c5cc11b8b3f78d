"""Replicate's flux-2-flex against a loopback Replicate: what is sent, every way a prediction ends."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.cli import main
from comfyui_flux2_flex.nodes.engine.keys import ApiKey
from comfyui_flux2_flex.nodes.engine.providers.replicate import ReplicateProvider
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage
from comfyui_flux2_flex.nodes.engine.batch import generate_cached
from comfyui_flux2_flex.nodes.engine.journal import TaskJournal
from comfyui_flux2_flex.nodes.engine.runner import RunHooks, RunSettings, generate, prepare

from fakes.loopback import Response
from fakes.replicate_server import FakeReplicate, PredictionPlan

FAST = RunSettings(submit_retry_seconds=5.0, task_timeout_seconds=10.0)


@pytest.fixture
def fake_replicate() -> Iterator[FakeReplicate]:
    with FakeReplicate() as server:
        yield server


@pytest.fixture
def replicate(fake_replicate: FakeReplicate) -> ReplicateProvider:
    return ReplicateProvider(base_url=fake_replicate.api_url, api_key=ApiKey(fake_replicate.api_token))


def run(provider: ReplicateProvider, request: FlexRequest | None = None, **kwargs):
    request = request or FlexRequest(prompt="a red fox", width=320, height=256, seed=7)
    return generate(prepare(request, provider), provider, settings=kwargs.pop("settings", FAST), **kwargs)


def reference(width: int, height: int, value: int = 200) -> InputImage:
    return InputImage(np.full((height, width, 3), value, np.uint8))


def test_a_prediction_is_polled_at_urls_get_and_downloaded_without_the_token(
    fake_replicate: FakeReplicate, replicate: ReplicateProvider
) -> None:
    fake_replicate.plans.append(PredictionPlan(statuses=["starting", "processing", "succeeded"]))
    statuses: list[str] = []
    result = run(replicate, hooks=RunHooks(on_progress=lambda fraction, status: statuses.append(status)))
    assert result.pixels.shape == (256, 320, 3) and result.task_id in fake_replicate.predictions
    assert "processing" in statuses
    submit = fake_replicate.submits[0]
    assert submit.headers["authorization"] == f"Bearer {fake_replicate.api_token}"
    assert submit.headers["prefer"] == "wait=5"
    assert [r.path for r in fake_replicate.status_host.requests] == [f"/v1/predictions/{result.task_id}"] * 2
    assert all(r.headers["authorization"] == f"Bearer {fake_replicate.api_token}"
               for r in fake_replicate.status_host.requests)
    (download,) = fake_replicate.delivery.requests
    assert "authorization" not in download.headers
    assert fake_replicate.api_token not in str(download.headers)


def test_every_setting_is_mapped_to_replicates_input(
    fake_replicate: FakeReplicate, replicate: ReplicateProvider
) -> None:
    request = FlexRequest(prompt="p", width=512, height=384, steps=12, guidance=3.5, seed=11, safety_tolerance=4,
                          output_format="jpeg", prompt_upsampling=False)
    run(replicate, request)
    assert fake_replicate.submits[0].json() == {"input": {
        "prompt": "p", "aspect_ratio": "custom", "width": 512, "height": 384, "steps": 12, "guidance": 3.5,
        "seed": 11, "safety_tolerance": 4, "output_format": "jpg", "prompt_upsampling": False}}


def test_references_go_as_jpeg_data_uris_and_the_size_follows_the_first(
    fake_replicate: FakeReplicate, replicate: ReplicateProvider
) -> None:
    request = FlexRequest(prompt="p", width=None, height=None, images=(reference(320, 240), reference(64, 64, 10)))
    result = run(replicate, request)
    model_input = fake_replicate.submits[0].json()["input"]
    assert model_input["aspect_ratio"] == model_input["resolution"] == "match_input_image"
    assert "width" not in model_input and "height" not in model_input
    first, second = model_input["input_images"]
    assert first.startswith("data:image/jpeg;base64,") and second.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(second.split(",", 1)[1]))) as picture:
        assert picture.format == "JPEG" and picture.size == (64, 64)
    assert result.pixels.shape == (240, 320, 3)


def test_ten_references_are_allowed_and_eleven_refused_before_sending(
    fake_replicate: FakeReplicate, replicate: ReplicateProvider
) -> None:
    run(replicate, FlexRequest(prompt="p", width=256, height=256, images=(reference(32, 32),) * 10))
    assert len(fake_replicate.submits[0].json()["input"]["input_images"]) == 10
    with pytest.raises(errors.InvalidRequestError, match="at most 10 images"):
        prepare(FlexRequest(prompt="p", width=256, height=256, images=(reference(32, 32),) * 11), replicate)
    assert len(fake_replicate.submits) == 1


def test_a_prediction_finished_within_the_wait_needs_no_poll(
    fake_replicate: FakeReplicate, replicate: ReplicateProvider
) -> None:
    fake_replicate.plans.append(PredictionPlan(statuses=["succeeded"], output_as_list=True))
    assert run(replicate).pixels.shape == (256, 320, 3)
    assert fake_replicate.status_host.requests == []
    assert len(fake_replicate.delivery.requests) == 1


@pytest.mark.parametrize(("width", "height", "field"), [(128, 512, "width"), (512, 2304, "height")])
def test_sizes_outside_replicates_custom_range_are_refused_before_sending(
    fake_replicate: FakeReplicate, replicate: ReplicateProvider, width: int, height: int, field: str
) -> None:
    with pytest.raises(errors.InvalidRequestError, match="from 256 to 2048 on Replicate") as caught:
        prepare(FlexRequest(prompt="p", width=width, height=height), replicate)
    assert caught.value.field == field
    assert fake_replicate.all_requests() == []


def test_safety_tolerance_zero_is_sent_as_one_with_a_note(
    fake_replicate: FakeReplicate, replicate: ReplicateProvider
) -> None:
    prepared = prepare(FlexRequest(prompt="p", width=256, height=256, safety_tolerance=0), replicate)
    assert prepared.notes == (
        "safety_tolerance 0 does not exist on Replicate (range 1-5): sent 1, the strictest it offers",)
    generate(prepared, replicate, settings=FAST)
    assert fake_replicate.submits[0].json()["input"]["safety_tolerance"] == 1
    assert prepare(FlexRequest(prompt="p", width=256, height=256, safety_tolerance=1), replicate).notes == ()


def test_the_price_is_reported_as_unknown_with_the_reason(replicate: ReplicateProvider) -> None:
    estimate = prepare(FlexRequest(prompt="p"), replicate).estimate
    assert not estimate.known
    assert "price unknown" in estimate.summary() and "predates BFL's cut" in estimate.summary()


def test_a_failed_prediction_shows_replicates_error(
    fake_replicate: FakeReplicate, replicate: ReplicateProvider
) -> None:
    fake_replicate.plans.append(PredictionPlan(statuses=["starting", "failed"], error="CUDA out of memory"))
    with pytest.raises(errors.GenerationFailedError, match="failed: CUDA out of memory"):
        run(replicate)
    assert len(fake_replicate.submits) == 1


@pytest.mark.parametrize("message", [
    "NSFW content detected. Try running it again, or try a different prompt.",
    "The input or output was flagged as sensitive. Please try again with different inputs. (E005)",
])
def test_moderation_failures_become_moderated_errors(
    fake_replicate: FakeReplicate, replicate: ReplicateProvider, message: str
) -> None:
    fake_replicate.plans.append(PredictionPlan(statuses=["processing", "failed"], error=message))
    with pytest.raises(errors.ModeratedError, match="refused task .* in moderation") as caught:
        run(replicate)
    assert caught.value.reasons == (message,) and caught.value.task_id in fake_replicate.predictions


def test_a_canceled_prediction_is_not_resubmitted(fake_replicate: FakeReplicate, replicate: ReplicateProvider) -> None:
    fake_replicate.plans.append(PredictionPlan(statuses=["processing", "canceled"]))
    with pytest.raises(errors.GenerationFailedError, match="was canceled .* not resubmitted"):
        run(replicate)
    assert len(fake_replicate.submits) == 1


def test_an_aborted_prediction_ends_at_once_instead_of_polling_to_the_timeout(
    fake_replicate: FakeReplicate, replicate: ReplicateProvider
) -> None:
    fake_replicate.plans.append(PredictionPlan(statuses=["starting", "aborted"]))
    with pytest.raises(errors.GenerationFailedError, match="aborted: it reached its deadline before it started"):
        run(replicate, settings=RunSettings(task_timeout_seconds=600.0))
    polls = [r for r in fake_replicate.all_requests() if r.method == "GET" and "/predictions/" in r.path]
    assert len(fake_replicate.submits) == 1 and len(polls) == 1


def test_a_prediction_is_resumed_from_the_journal_after_a_timeout(
    fake_replicate: FakeReplicate, replicate: ReplicateProvider, tmp_path: Path
) -> None:
    fake_replicate.plans.append(PredictionPlan(statuses=["starting"] * 4 + ["succeeded"]))
    journal = TaskJournal(tmp_path / "journal")
    prepared = prepare(FlexRequest(prompt="a red fox", width=320, height=256, seed=7), replicate)
    with pytest.raises(errors.GenerationTimeoutError):
        generate_cached(prepared, replicate, None, journal=journal, settings=RunSettings(task_timeout_seconds=0.2))
    result = generate_cached(prepared, replicate, None, journal=journal, settings=FAST)
    assert result.pixels.shape == (256, 320, 3) and len(fake_replicate.submits) == 1


def test_a_5xx_while_polling_keeps_polling(fake_replicate: FakeReplicate, replicate: ReplicateProvider) -> None:
    fake_replicate.plans.append(PredictionPlan(statuses=["starting", "processing", "processing", "succeeded"],
                                               poll_http_errors={0: 502, 1: 503}))
    assert run(replicate).pixels.shape == (256, 320, 3)
    assert len(fake_replicate.status_host.requests) == 3 and len(fake_replicate.submits) == 1


def test_a_429_on_submit_waits_and_submits_again(fake_replicate: FakeReplicate, replicate: ReplicateProvider) -> None:
    fake_replicate.submit_script.append(Response.json(
        {"title": "Request was throttled", "detail": "Request was throttled. Expected available in 1 second.",
         "status": 429}, 429, {"Retry-After": "0.1"}))
    run(replicate)
    assert len(fake_replicate.submits) == 2 and len(fake_replicate.predictions) == 1


@pytest.mark.parametrize(
    ("status", "title", "detail", "error", "words"),
    [
        (401, "Unauthenticated", "You did not pass a valid authentication token", errors.AuthenticationError,
         "rejected the API key .*valid authentication token"),
        (402, "Insufficient credit", "You have insufficient credit to run this model.",
         errors.InsufficientCreditsError, "insufficient credit to run this model"),
        (422, "Input validation failed", "- input.steps: Must be less than or equal to 50\n",
         errors.ProviderRejectedError, "input.steps: Must be less than or equal to 50"),
    ],
)
def test_submit_errors_show_replicates_detail(fake_replicate, replicate, status, title, detail, error, words) -> None:
    fake_replicate.submit_script.append(Response.json({"title": title, "detail": detail, "status": status}, status))
    with pytest.raises(error, match=words):
        run(replicate)
    assert len(fake_replicate.submits) == 1


def test_a_wrong_token_is_refused_and_never_shown(fake_replicate: FakeReplicate) -> None:
    provider = ReplicateProvider(base_url=fake_replicate.api_url, api_key=ApiKey("r8_wrong_token"))
    with pytest.raises(errors.AuthenticationError, match="HTTP 401") as caught:
        run(provider)
    assert "r8_wrong_token" not in str(caught.value)


def test_a_status_url_off_the_api_host_never_gets_the_token(
    fake_replicate: FakeReplicate, replicate: ReplicateProvider
) -> None:
    fake_replicate.submit_script.append(Response.json(
        {"id": "p1", "status": "starting", "urls": {"get": "http://localhost:9/v1/predictions/p1"}}, 201))
    with pytest.raises(errors.UnsafeUrlError, match="will not send your API key"):
        run(replicate)
    assert fake_replicate.status_host.requests == []


def test_the_token_appears_in_no_log_error_or_report(
    fake_replicate: FakeReplicate, replicate: ReplicateProvider, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_replicate.submit_script.append(Response.json({"title": "x", "detail": "bad", "status": 422}, 422))
    fake_replicate.plans.append(PredictionPlan(statuses=["failed"], error="boom"))
    texts = [repr(replicate), str(vars(replicate))]
    for _ in range(2):
        with pytest.raises(errors.FluxFlexError) as caught:
            run(replicate)
        texts.append(str(caught.value))
    texts += [run(replicate).report(), caplog.text]
    assert "/v1/predictions/" in caplog.text, "httpx logs requests at DEBUG, so real log lines are checked"
    assert all(fake_replicate.api_token not in text for text in texts)


def test_cli_generates_with_replicate(fake_replicate: FakeReplicate, monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", fake_replicate.api_token)
    monkeypatch.setenv("FLUX_FLEX_REPLICATE_URL", fake_replicate.api_url)
    out_file = tmp_path / "x.png"
    assert main(["generate", "--provider", "replicate", "--prompt", "fox", "--width", "320", "--height", "256",
                 "--safety-tolerance", "0", "--out", str(out_file)]) == 0
    with Image.open(out_file) as saved:
        assert saved.size == (320, 256) and saved.format == "PNG"
    out = capsys.readouterr().out
    assert "replicate: price unknown" in out and "sent 1, the strictest it offers" in out
    assert fake_replicate.api_token not in out
