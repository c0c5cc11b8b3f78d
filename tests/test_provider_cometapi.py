"""CometAPI against a loopback CometAPI: BFL's body and statuses behind CometAPI's door and key."""

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
from comfyui_flux2_flex.nodes.engine.providers.cometapi import CometApiProvider
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage
from comfyui_flux2_flex.nodes.engine.runner import RunSettings, generate, prepare

from fakes.bfl_server import TaskPlan
from fakes.cometapi_server import FakeCometApi
from fakes.loopback import Response

FAST = RunSettings(submit_retry_seconds=5.0, task_timeout_seconds=10.0)


@pytest.fixture
def comet() -> Iterator[FakeCometApi]:
    with FakeCometApi() as server:
        yield server


@pytest.fixture
def provider(comet: FakeCometApi) -> CometApiProvider:
    return CometApiProvider(base_url=comet.api_url, api_key=ApiKey(comet.api_key))


def run(provider: CometApiProvider, request: FlexRequest | None = None, **kwargs):
    request = request or FlexRequest(prompt="a red kite", width=256, height=192, seed=7)
    return generate(prepare(request, provider), provider, settings=kwargs.pop("settings", FAST), **kwargs)


def picture(width: int, height: int, value: int) -> InputImage:
    return InputImage(np.full((height, width, 3), value, np.uint8))


def test_a_request_becomes_bfls_body_on_cometapis_path_with_a_bearer_key(comet, provider) -> None:
    images = tuple(picture(64 + index, 48, index * 20) for index in range(8))
    request = FlexRequest(prompt="edit", width=512, height=384, steps=20, guidance=3.5, seed=11, safety_tolerance=0,
                          output_format="webp", prompt_upsampling=False, images=images)
    result = run(provider, request)
    assert result.pixels.shape == (384, 512, 3) and result.seed == 11
    submit = comet.submits[0]
    assert submit.path == "/flux/v1/flux-2-flex"
    assert submit.headers["authorization"] == f"Bearer {comet.api_key}" and "x-key" not in submit.headers
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


def test_more_than_eight_images_are_refused_before_sending(comet, provider) -> None:
    request = FlexRequest(prompt="p", images=tuple(picture(64, 64, 0) for _ in range(9)))
    with pytest.raises(errors.InvalidRequestError, match="at most 8 images"):
        prepare(request, provider)
    with pytest.raises(errors.InvalidRequestError, match="steps = 0"):
        prepare(FlexRequest(prompt="p", steps=0), provider)
    assert comet.all_requests() == []


def test_polls_the_returned_cometapi_url_and_downloads_without_the_key(comet, provider) -> None:
    task_id = run(provider).task_id
    assert [r.query for r in comet.polls] == [{"id": task_id}] * 3  # Pending, Generating, Ready
    assert all(r.headers["authorization"] == f"Bearer {comet.api_key}" for r in comet.polls)
    (download,) = comet.delivery.requests
    assert "authorization" not in download.headers and comet.api_key not in str(download.headers)


def test_an_answer_without_polling_url_is_polled_by_id() -> None:
    with FakeCometApi(polling_url_mode="none") as comet:
        provider = CometApiProvider(base_url=comet.api_url, api_key=ApiKey(comet.api_key))
        result = run(provider)
        assert result.task_id in comet.tasks
        assert {r.query["id"] for r in comet.polls} == {result.task_id}


def test_a_relayed_bfl_polling_url_never_gets_the_cometapi_key() -> None:
    with FakeCometApi(polling_url_mode="foreign") as comet:
        provider = CometApiProvider(base_url=comet.api_url, api_key=ApiKey(comet.api_key))
        result = run(provider)
        assert comet.cluster.requests == [], "BFL's cluster was never asked, so the key never went there"
        assert {r.query["id"] for r in comet.polls} == {result.task_id}


def test_early_task_not_found_is_lag_and_later_means_expired(comet, provider) -> None:
    comet.plans.append(TaskPlan(statuses=["Task not found", "Pending", "Ready"]))
    assert run(provider).pixels.shape == (192, 256, 3)
    comet.plans.append(TaskPlan(statuses=["Pending", "Pending", "Pending", "Task not found"]))
    with pytest.raises(errors.ResultExpiredError, match="CometAPI no longer knows task"):
        run(provider)
    assert len(comet.submits) == 2


@pytest.mark.parametrize("status", ["Failed", "Error"])
def test_failed_tasks_show_cometapis_reason(comet, provider, status) -> None:
    comet.plans.append(TaskPlan(statuses=["Pending", status], details={"error": "upstream timeout"}))
    with pytest.raises(errors.GenerationFailedError, match="CometAPI task .* failed: upstream timeout"):
        run(provider)
    assert len(comet.submits) == 1


@pytest.mark.parametrize(("status", "stage", "advice"), [("Request Moderated", "request", "Change the prompt"),
                                                          ("Content Moderated", "content", "different seed")])
def test_moderation_is_reported_as_bfl_reports_it(comet, provider, status, stage, advice) -> None:
    comet.plans.append(TaskPlan(statuses=[status], details={"Moderation Reasons": ["Derivative Works Filter"]}))
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
def test_submit_errors_carry_cometapis_explanation(comet, provider, answer, error, words) -> None:
    comet.submit_script.append(answer)
    with pytest.raises(error, match=words):
        run(provider)
    assert len(comet.submits) == 1 and not comet.tasks


def test_a_wrong_key_is_refused_and_not_repeated(comet) -> None:
    provider = CometApiProvider(base_url=comet.api_url, api_key=ApiKey("comet-wrong-key-999"))
    with pytest.raises(errors.AuthenticationError, match=r"\(HTTP 401\): Invalid token") as caught:
        run(provider)
    assert "comet-wrong-key-999" not in str(caught.value) and len(comet.submits) == 1


def test_429_waits_then_submits_once_more(comet, provider) -> None:
    comet.submit_script.append(Response.json({"error": {"message": "rate limited"}}, 429, {"Retry-After": "0.1"}))
    run(provider)
    assert len(comet.submits) == 2 and len(comet.tasks) == 1


def test_a_5xx_while_polling_keeps_polling_the_same_task(comet, provider) -> None:
    comet.plans.append(TaskPlan(statuses=["Pending", "Pending", "Ready"], poll_http_errors={1: 502}))
    assert run(provider).pixels.shape == (192, 256, 3)
    assert len(comet.submits) == 1 and len(comet.polls) == 3


def test_the_key_never_appears_in_errors_logs_or_reports(comet, provider, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    texts = [repr(provider), str(vars(provider))]
    comet.submit_script.append(Response.json({"detail": "no"}, 422))
    comet.plans.append(TaskPlan(statuses=["Failed"], details={"error": "boom"}))
    for _ in range(2):
        with pytest.raises(errors.FluxFlexError) as caught:
            run(provider)
        texts.append(str(caught.value))
    texts += [run(provider).report(), caplog.text]
    assert "get_result" in caplog.text
    assert not [text for text in texts if comet.api_key in text]


def test_the_price_is_unknown_and_says_why(provider) -> None:
    estimate = prepare(FlexRequest(prompt="p"), provider).estimate
    assert not estimate.known
    assert "$0.008 per request" in estimate.summary() and "apidoc.cometapi.com" in estimate.as_text()


def test_the_cli_generates_through_cometapi(comet, monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("COMETAPI_KEY", comet.api_key)
    monkeypatch.setenv("FLUX_FLEX_COMETAPI_URL", comet.api_url)
    out_file = tmp_path / "x.png"
    assert main(["generate", "--provider", "cometapi", "--prompt", "kite", "--width", "320", "--height", "240",
                 "--seed", "5", "--out", str(out_file)]) == 0
    with Image.open(out_file) as saved:
        assert saved.size == (320, 240) and saved.format == "PNG"
    out = capsys.readouterr().out
    assert "cometapi: price unknown" in out and comet.api_key not in out
