"""Replicate's flux-2-flex against a loopback Replicate: what is sent, every way a prediction ends."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.providers.replicate import ReplicateProvider
from comfyui_flux2_flex.nodes.engine.request import FlexRequest
from comfyui_flux2_flex.nodes.engine.runner import RunHooks, RunSettings, generate, prepare

from fakes.loopback import Response
from fakes.replicate_server import FakeReplicate, PredictionPlan
from provider_runs import FAST, picture, run


@pytest.fixture
def name() -> str:
    """The provider these tests are about (the conftest fixtures `fake` and `provider` follow it)."""
    return "replicate"


def test_a_prediction_is_polled_at_urls_get_and_downloaded_without_the_token(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    fake.plans.append(PredictionPlan(statuses=["starting", "processing", "succeeded"]))
    statuses: list[str] = []
    result = run(provider, hooks=RunHooks(on_progress=lambda fraction, status: statuses.append(status)))
    assert result.pixels.shape == (256, 320, 3) and result.task_id in fake.predictions
    assert "processing" in statuses
    submit = fake.submits[0]
    assert submit.headers["authorization"] == f"Bearer {fake.api_key}"
    assert submit.headers["prefer"] == "wait=5"
    assert [r.path for r in fake.status_host.requests] == [f"/v1/predictions/{result.task_id}"] * 2
    assert all(r.headers["authorization"] == f"Bearer {fake.api_key}"
               for r in fake.status_host.requests)
    (download,) = fake.delivery.requests
    assert "authorization" not in download.headers
    assert fake.api_key not in str(download.headers)


def test_every_setting_is_mapped_to_replicates_input(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    request = FlexRequest(prompt="p", width=512, height=384, steps=12, guidance=3.5, seed=11, safety_tolerance=4,
                          output_format="jpeg", prompt_upsampling=False)
    run(provider, request)
    assert fake.submits[0].json() == {"input": {
        "prompt": "p", "aspect_ratio": "custom", "width": 512, "height": 384, "steps": 12, "guidance": 3.5,
        "seed": 11, "safety_tolerance": 4, "output_format": "jpg", "prompt_upsampling": False}}


def test_references_go_as_jpeg_data_uris_when_chosen_and_the_size_follows_the_first(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    request = FlexRequest(prompt="p", width=None, height=None, images=(picture(320, 240), picture(64, 64, 10)),
                          upload_format="jpeg")
    result = run(provider, request)
    model_input = fake.submits[0].json()["input"]
    assert model_input["aspect_ratio"] == model_input["resolution"] == "match_input_image"
    assert "width" not in model_input and "height" not in model_input
    first, second = model_input["input_images"]
    assert first.startswith("data:image/jpeg;base64,") and second.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(second.split(",", 1)[1]))) as sent:
        assert sent.format == "JPEG" and sent.size == (64, 64)
    assert result.pixels.shape == (240, 320, 3)


def test_ten_references_are_allowed_and_eleven_refused_before_sending(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    run(provider, FlexRequest(prompt="p", width=256, height=256, images=(picture(32, 32),) * 10))
    assert len(fake.submits[0].json()["input"]["input_images"]) == 10
    with pytest.raises(errors.InvalidRequestError, match="at most 10 images"):
        prepare(FlexRequest(prompt="p", width=256, height=256, images=(picture(32, 32),) * 11), provider)
    assert len(fake.submits) == 1


def test_a_prediction_finished_within_the_wait_needs_no_poll(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    fake.plans.append(PredictionPlan(statuses=["succeeded"], output_as_list=True))
    assert run(provider).pixels.shape == (256, 320, 3)
    assert fake.status_host.requests == []
    assert len(fake.delivery.requests) == 1


@pytest.mark.parametrize(("width", "height", "field"), [(128, 512, "width"), (512, 2304, "height")])
def test_sizes_outside_replicates_custom_range_are_refused_before_sending(
    fake: FakeReplicate, provider: ReplicateProvider, width: int, height: int, field: str
) -> None:
    with pytest.raises(errors.InvalidRequestError, match="from 256 to 2048 on Replicate") as caught:
        prepare(FlexRequest(prompt="p", width=width, height=height), provider)
    assert caught.value.field == field
    assert fake.all_requests() == []


def test_safety_tolerance_zero_is_sent_as_one_with_a_note(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    prepared = prepare(FlexRequest(prompt="p", width=256, height=256, safety_tolerance=0), provider)
    assert prepared.notes == (
        "safety_tolerance 0 does not exist on Replicate (range 1-5): sent 1, the strictest it offers",)
    generate(prepared, provider, settings=FAST)
    assert fake.submits[0].json()["input"]["safety_tolerance"] == 1
    assert prepare(FlexRequest(prompt="p", width=256, height=256, safety_tolerance=1), provider).notes == ()


def test_the_price_is_reported_as_unknown_with_the_reason(provider: ReplicateProvider) -> None:
    estimate = prepare(FlexRequest(prompt="p"), provider).estimate
    assert not estimate.known
    assert "price unknown" in estimate.summary() and "predates BFL's cut" in estimate.summary()


def test_a_failed_prediction_shows_replicates_error(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    fake.plans.append(PredictionPlan(statuses=["starting", "failed"], error="CUDA out of memory"))
    with pytest.raises(errors.GenerationFailedError, match="failed: CUDA out of memory"):
        run(provider)
    assert len(fake.submits) == 1


@pytest.mark.parametrize("message", [
    "NSFW content detected. Try running it again, or try a different prompt.",
    "The input or output was flagged as sensitive. Please try again with different inputs. (E005)",
])
def test_moderation_failures_become_moderated_errors(
    fake: FakeReplicate, provider: ReplicateProvider, message: str
) -> None:
    fake.plans.append(PredictionPlan(statuses=["processing", "failed"], error=message))
    with pytest.raises(errors.ModeratedError, match="refused task .* in moderation") as caught:
        run(provider)
    assert caught.value.reasons == (message,) and caught.value.task_id in fake.predictions


def test_a_canceled_prediction_is_not_resubmitted(fake: FakeReplicate, provider: ReplicateProvider) -> None:
    fake.plans.append(PredictionPlan(statuses=["processing", "canceled"]))
    with pytest.raises(errors.GenerationFailedError, match="was canceled .* not resubmitted"):
        run(provider)
    assert len(fake.submits) == 1


def test_an_aborted_prediction_ends_at_once_instead_of_polling_to_the_timeout(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    fake.plans.append(PredictionPlan(statuses=["starting", "aborted"]))
    with pytest.raises(errors.GenerationFailedError, match="aborted: it reached its deadline before it started") as caught:
        run(provider, settings=RunSettings(task_timeout_seconds=600.0))
    polls = [r for r in fake.all_requests() if r.method == "GET" and "/predictions/" in r.path]
    assert caught.value.task_id in fake.predictions
    assert len(fake.submits) == 1 and len(polls) == 1


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
def test_submit_errors_show_replicates_detail(fake, provider, status, title, detail, error, words) -> None:
    fake.submit_script.append(Response.json({"title": title, "detail": detail, "status": status}, status))
    with pytest.raises(error, match=words) as caught:
        run(provider)
    assert (caught.value.provider, caught.value.status, caught.value.billed) == ("replicate", status, errors.NOT_BILLED)
    assert len(fake.submits) == 1


def test_a_status_url_off_the_api_host_never_gets_the_token(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    fake.submit_script.append(Response.json(
        {"id": "p1", "status": "starting", "urls": {"get": "http://localhost:9/v1/predictions/p1"}}, 201))
    with pytest.raises(errors.UnsafeUrlError, match="will not send your API key"):
        run(provider)
    assert fake.status_host.requests == []
