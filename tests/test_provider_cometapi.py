"""CometAPI against a loopback CometAPI: BFL's body and statuses behind CometAPI's door and key."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.keys import ApiKey
from comfyui_flux2_flex.nodes.engine.providers import make_provider
from comfyui_flux2_flex.nodes.engine.request import FlexRequest
from comfyui_flux2_flex.nodes.engine.runner import prepare

from fakes.bfl_server import TaskPlan
from fakes.cometapi_server import FakeCometApi
from fakes.loopback import Response
from provider_runs import picture, run


@pytest.fixture
def name() -> str:
    """The provider these tests are about (the conftest fixtures `fake` and `provider` follow it)."""
    return "cometapi"


def test_a_request_becomes_bfls_body_on_cometapis_path_with_a_bearer_key(fake, provider) -> None:
    images = tuple(picture(64 + index, 48, index * 20) for index in range(8))
    request = FlexRequest(prompt="edit", width=512, height=384, steps=20, guidance=3.5, seed=11, safety_tolerance=0,
                          output_format="webp", prompt_upsampling=False, images=images)
    result = run(provider, request)
    assert result.pixels.shape == (384, 512, 3) and result.seed == 11
    submit = fake.submits[0]
    assert submit.path == "/flux/v1/flux-2-flex"
    assert submit.headers["authorization"] == f"Bearer {fake.api_key}" and "x-key" not in submit.headers
    body = submit.json()
    assert {k: v for k, v in body.items() if not k.startswith("input_image")} == {
        "prompt": "edit", "width": 512, "height": 384, "steps": 20, "guidance": 3.5, "seed": 11,
        "safety_tolerance": 0, "output_format": "webp", "prompt_upsampling": False}
    slots = ["input_image"] + [f"input_image_{n}" for n in range(2, 9)]
    assert sorted(k for k in body if k.startswith("input_image")) == sorted(slots)
    for index, slot in enumerate(slots):  # raw base64 PNG, in order, as BFL takes them
        with Image.open(io.BytesIO(base64.b64decode(body[slot]))) as sent:
            assert sent.format == "PNG" and sent.size == (64 + index, 48)
    assert prepare(request, provider).notes == (), "CometAPI relays every BFL setting as it is"


def test_more_than_eight_images_are_refused_before_sending(fake, provider) -> None:
    request = FlexRequest(prompt="p", images=tuple(picture(64, 64, 0) for _ in range(9)))
    with pytest.raises(errors.InvalidRequestError, match="at most 8 images"):
        prepare(request, provider)
    with pytest.raises(errors.InvalidRequestError, match="steps = 0"):
        prepare(FlexRequest(prompt="p", steps=0), provider)
    assert fake.all_requests() == []


def test_polls_the_returned_cometapi_url_and_downloads_without_the_key(fake, provider) -> None:
    task_id = run(provider).task_id
    assert [r.query for r in fake.polls] == [{"id": task_id}] * 3  # Pending, Generating, Ready
    assert all(r.headers["authorization"] == f"Bearer {fake.api_key}" for r in fake.polls)
    (download,) = fake.delivery.requests
    assert "authorization" not in download.headers and fake.api_key not in str(download.headers)


def test_an_answer_without_polling_url_is_polled_by_id() -> None:
    with FakeCometApi(polling_url_mode="none") as fake:
        provider = make_provider("cometapi", base_url=fake.api_url, api_key=ApiKey(fake.api_key), environ={})
        result = run(provider)
        assert result.task_id in fake.tasks
        assert {r.query["id"] for r in fake.polls} == {result.task_id}


def test_a_relayed_bfl_polling_url_never_gets_the_cometapi_key() -> None:
    with FakeCometApi(polling_url_mode="foreign") as fake:
        provider = make_provider("cometapi", base_url=fake.api_url, api_key=ApiKey(fake.api_key), environ={})
        result = run(provider)
        assert fake.cluster.requests == [], "BFL's cluster was never asked, so the key never went there"
        assert {r.query["id"] for r in fake.polls} == {result.task_id}


def test_early_task_not_found_is_lag_and_later_means_expired(fake, provider) -> None:
    fake.plans.append(TaskPlan(statuses=["Task not found", "Pending", "Ready"]))
    assert run(provider).pixels.shape == (256, 320, 3)
    fake.plans.append(TaskPlan(statuses=["Pending", "Pending", "Pending", "Task not found"]))
    with pytest.raises(errors.ResultExpiredError, match="CometAPI no longer knows task"):
        run(provider)
    assert len(fake.submits) == 2


@pytest.mark.parametrize("status", ["Failed", "Error"])
def test_failed_tasks_show_cometapis_reason(fake, provider, status) -> None:
    fake.plans.append(TaskPlan(statuses=["Pending", status], details={"error": "upstream timeout"}))
    with pytest.raises(errors.GenerationFailedError, match="CometAPI task .* failed: upstream timeout"):
        run(provider)
    assert len(fake.submits) == 1


@pytest.mark.parametrize(("status", "stage", "advice"), [("Request Moderated", "request", "Change the prompt"),
                                                          ("Content Moderated", "content", "different seed")])
def test_moderation_is_reported_as_bfl_reports_it(fake, provider, status, stage, advice) -> None:
    fake.plans.append(TaskPlan(statuses=[status], details={"Moderation Reasons": ["Derivative Works Filter"]}))
    with pytest.raises(errors.ModeratedError, match=advice) as caught:
        run(provider)
    assert caught.value.stage == stage and caught.value.reasons == ("Derivative Works Filter",)
    assert str(caught.value).startswith("CometAPI ")


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        (Response.json({"error": {"message": "insufficient quota", "type": "comet_api_error"}}, 402),
         errors.InsufficientCreditsError, "insufficient quota"),
        (Response.json({"detail": [{"loc": ["body", "guidance"], "msg": "Input should be between 1.5 and 10"}]}, 422),
         errors.ProviderRejectedError, "guidance: Input should be between"),
        (Response.json({"error": {"message": "bad request body"}}, 400), errors.ProviderRejectedError,
         "HTTP 400.*bad request body"),
    ],
)
def test_submit_errors_carry_cometapis_explanation(fake, provider, answer, error, words) -> None:
    fake.submit_script.append(answer)
    with pytest.raises(error, match=words) as caught:
        run(provider)
    assert (caught.value.provider, caught.value.status) == ("cometapi", answer.status)
    assert len(fake.submits) == 1 and not fake.tasks


def test_the_price_is_unknown_and_says_why(provider) -> None:
    estimate = prepare(FlexRequest(prompt="p"), provider).estimate
    assert not estimate.known
    assert "$0.008 per request" in estimate.summary() and "apidoc.cometapi.com" in estimate.as_text()
