"""The BFL client against a loopback BFL: every path a real task can take."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import numpy as np
import pytest

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.keys import ApiKey
from comfyui_flux2_flex.nodes.engine.errors import SubmitOutcomeUnknown
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider
from comfyui_flux2_flex.nodes.engine.providers.tasks import PollUpdate, SubmittedTask
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage
from comfyui_flux2_flex.nodes.engine.runner import RunHooks, RunSettings

from fakes.bfl_server import FakeBfl, TaskPlan
from fakes.loopback import Response
from provider_runs import run

def test_success_returns_the_image_cost_and_task_details(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    result = run(bfl)
    assert result.pixels.shape == (256, 320, 3) and result.pixels.dtype == np.uint8
    assert result.task_id in fake_bfl.tasks
    assert result.seed == 7
    assert result.reported_cost == 5.0 and result.estimate.credits == 5.0
    assert result.output_mp == 0.08
    assert "5 credits" in result.report()


def test_body_carries_every_setting_and_references_as_raw_base64(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    pixels = np.full((64, 80, 3), 200, np.uint8)
    request = FlexRequest(prompt="p", width=128, height=128, steps=12, guidance=3.5, seed=1, safety_tolerance=4,
                          output_format="webp", prompt_upsampling=False, images=(InputImage(pixels),) * 2)
    run(bfl, request)
    body = fake_bfl.submits[0].json()
    assert {k: body[k] for k in ("steps", "guidance", "safety_tolerance", "output_format", "prompt_upsampling")} == {
        "steps": 12, "guidance": 3.5, "safety_tolerance": 4, "output_format": "webp", "prompt_upsampling": False}
    assert body["input_image"].startswith("iVBOR") and body["input_image_2"] == body["input_image"]
    assert "input_image_3" not in body


def test_polls_the_returned_url_with_the_key_and_downloads_without_it(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    run(bfl)
    assert [r.path for r in fake_bfl.cluster.requests] == ["/v1/get_result"] * 3
    assert all(r.headers.get("x-key") == fake_bfl.api_key for r in fake_bfl.cluster.requests)
    assert len(fake_bfl.delivery.requests) == 1
    assert "x-key" not in fake_bfl.delivery.requests[0].headers
    assert fake_bfl.api_key not in str(fake_bfl.delivery.requests[0].headers)


@pytest.mark.parametrize("statuses", [["Pending", "Reasoning", "Generating", "Ready"], ["Queued", "SomethingNew", "Ready"]])
def test_in_progress_and_unknown_statuses_keep_polling(fake_bfl: FakeBfl, bfl: BflProvider, statuses) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=statuses))
    seen: list[str] = []
    run(bfl, hooks=RunHooks(on_progress=lambda fraction, status: seen.append(status)))
    assert len(fake_bfl.submits) == 1
    assert statuses[1] in seen


def test_progress_is_reported_as_a_fraction_even_when_sent_as_percent(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Pending", "Pending", "Pending", "Ready"], progress_as_percent=True))
    fractions: list[float] = []
    run(bfl, hooks=RunHooks(on_progress=lambda f, s: fractions.append(f) if f is not None else None))
    assert fractions and all(0.0 <= f <= 1.0 for f in fractions)
    assert 0.7 <= max(fractions) <= 1.0


def test_early_task_not_found_is_retried(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Task not found", "Task not found", "Ready"]))
    assert run(bfl).pixels.shape[0] == 256
    assert len(fake_bfl.submits) == 1


def test_persistent_task_not_found_means_expired(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Pending", "Pending", "Pending", "Task not found"]))
    with pytest.raises(errors.ResultExpiredError, match="no longer knows task"):
        run(bfl)
    assert len(fake_bfl.submits) == 1


def test_request_moderated_names_the_reasons(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Request Moderated"],
                                   details={"Moderation Reasons": ["Derivative Works Filter"]}))
    with pytest.raises(errors.ModeratedError) as caught:
        run(bfl)
    assert caught.value.stage == "request" and caught.value.reasons == ("Derivative Works Filter",)
    assert "Derivative Works Filter" in str(caught.value) and "Change the prompt" in str(caught.value)


def test_content_moderated_suggests_a_new_seed(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Pending", "Content Moderated"],
                                   details={"Moderation Reasons": ["Sexual Content"]}))
    with pytest.raises(errors.ModeratedError, match="different seed") as caught:
        run(bfl)
    assert caught.value.stage == "content" and caught.value.task_id in fake_bfl.tasks


def test_error_status_shows_the_details(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Pending", "Error"], details={"error": "GPU fell over"}))
    with pytest.raises(errors.GenerationFailedError, match="GPU fell over"):
        run(bfl)


def test_429_that_never_clears_gives_up_saying_nothing_was_billed(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    fake_bfl.submit_script.extend(Response.json({"detail": "busy"}, 429, {"Retry-After": "0.2"}) for _ in range(20))
    with pytest.raises(errors.RateLimitedError, match="Nothing was created or billed") as caught:
        run(bfl, settings=RunSettings(submit_retry_seconds=0.5))
    assert (caught.value.provider, caught.value.status, caught.value.billed) == ("bfl", 429, errors.NOT_BILLED)
    assert not fake_bfl.tasks


@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        (401, {"detail": "Unauthorized"}, errors.AuthenticationError, "rejected the API key"),
        (402, {"detail": "Insufficient credits"}, errors.InsufficientCreditsError, "no credits"),
        (422, {"detail": [{"loc": ["body", "steps"], "msg": "Input should be less than or equal to 50",
                           "type": "less_than_equal"}]}, errors.ProviderRejectedError, "steps: Input should be"),
    ],
)
def test_submit_errors_have_their_own_messages(fake_bfl, bfl, status, body, error, words) -> None:
    fake_bfl.submit_script.append(Response.json(body, status))
    with pytest.raises(error, match=words) as caught:
        run(bfl)
    assert (caught.value.provider, caught.value.status, caught.value.billed) == ("bfl", status, errors.NOT_BILLED)
    assert len(fake_bfl.submits) == 1


def test_a_submit_timeout_after_sending_is_not_resubmitted(fake_bfl: FakeBfl) -> None:
    fake_bfl.submit_delay = 1.0
    client = httpx.Client(timeout=httpx.Timeout(0.3))
    provider = BflProvider(base_url=fake_bfl.api_url, api_key=ApiKey(fake_bfl.api_key), client=client)
    with pytest.raises(SubmitOutcomeUnknown, match="may have been created"):
        run(provider)
    time.sleep(0.8)  # let the server finish the one request it got
    assert len(fake_bfl.submits) == 1


def test_unreachable_api_says_nothing_was_sent() -> None:
    with FakeBfl() as closed:
        url = closed.api_url
    provider = BflProvider(base_url=url, api_key=ApiKey("k"))
    with pytest.raises(errors.ProviderUnavailableError, match="Nothing was sent") as caught:
        run(provider)
    assert (caught.value.provider, caught.value.billed) == ("bfl", errors.NOT_BILLED)


def test_a_finished_task_without_an_image_url_is_a_failure_not_an_assert(bfl: BflProvider) -> None:
    task = SubmittedTask(provider="bfl", task_id="t1", poll_url="https://api.bfl.ai/v1/get_result?id=t1")
    with pytest.raises(errors.GenerationFailedError) as caught:
        bfl.fetch(task, PollUpdate(done=True, status="Ready"))
    assert (caught.value.provider, caught.value.task_id, caught.value.billed) == ("bfl", "t1", errors.BILLED)


def test_expired_result_link(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    fake_bfl.result_expiry = 0.0
    with pytest.raises(errors.ResultExpiredError, match="expired") as caught:
        run(bfl)
    assert (caught.value.provider, caught.value.status, caught.value.billed) == ("bfl", 403, errors.BILLED)
    assert caught.value.task_id in fake_bfl.tasks


def test_polling_url_off_the_api_host_never_gets_the_key(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    fake_bfl.submit_script.append(Response.json({"id": "t1", "polling_url": "http://localhost:9/v1/get_result?id=t1"}))
    with pytest.raises(errors.UnsafeUrlError, match="will not send your API key"):
        run(bfl)
    assert fake_bfl.cluster.requests == []


def test_cancel_stops_polling_within_a_second_and_names_the_paid_task(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Pending"]))
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    with pytest.raises(errors.CancelledError, match="already been submitted") as caught:
        run(bfl, hooks=RunHooks(is_cancelled=cancel.is_set))
    assert caught.value.task_id in fake_bfl.tasks and "5 credits" in str(caught.value)
    polls = len(fake_bfl.cluster.requests)
    time.sleep(1.2)
    assert len(fake_bfl.cluster.requests) == polls, "no poll after cancelling"
    assert len(fake_bfl.submits) == 1


def test_a_task_that_never_finishes_times_out_without_resubmitting(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    fake_bfl.plans.append(TaskPlan(statuses=["Pending"]))
    with pytest.raises(errors.GenerationTimeoutError, match="not resubmitted") as caught:
        run(bfl, settings=RunSettings(task_timeout_seconds=1.0))
    assert caught.value.task_id in fake_bfl.tasks and caught.value.billed == errors.BILLED
    assert len(fake_bfl.submits) == 1


def test_the_suite_cannot_reach_beyond_loopback() -> None:
    with pytest.raises(ConnectionRefusedError, match="loopback only"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)  # TEST-NET-1: blocked before any packet
    with pytest.raises(errors.ProviderUnavailableError, match="Could not reach"):
        run(BflProvider(base_url="https://192.0.2.1", api_key=ApiKey("k")),
            settings=RunSettings(submit_retry_seconds=1.0, connect_retries=0))
