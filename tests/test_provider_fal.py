"""fal's flux-2-flex queue against a loopback fal: what is sent, every way a request ends."""

from __future__ import annotations


import pytest

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.keys import ApiKey
from comfyui_flux2_flex.nodes.engine.providers.fal import FalProvider
from comfyui_flux2_flex.nodes.engine.request import FlexRequest
from comfyui_flux2_flex.nodes.engine.runner import RunHooks, RunSettings, generate, prepare

from fakes.fal_server import FakeFal, RequestPlan
from fakes.loopback import Response
from provider_runs import FAST, picture, run

APP = "/fal-ai/flux-2-flex"


@pytest.fixture
def name() -> str:
    """The provider these tests are about (the conftest fixtures `fake` and `provider` follow it)."""
    return "fal"


def test_text_to_image_polls_the_returned_urls_and_downloads_without_the_key(
    fake: FakeFal, provider: FalProvider
) -> None:
    fake.plans.append(RequestPlan(statuses=["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]))
    statuses: list[str] = []
    result = run(provider, hooks=RunHooks(on_progress=lambda fraction, status: statuses.append(status)))
    assert result.pixels.shape == (256, 320, 3) and result.seed == 7
    request_id = result.task_id
    assert [(r.method, r.path) for r in fake.queue.requests] == [
        ("POST", APP),
        *[("GET", f"{APP}/requests/{request_id}/status")] * 3,
        ("GET", f"{APP}/requests/{request_id}"),
    ]
    assert all(r.headers["authorization"] == f"Key {fake.api_key}" for r in fake.queue.requests)
    assert "in queue (position 2)" in statuses and "in progress" in statuses
    (download,) = fake.cdn.requests
    assert "authorization" not in download.headers and fake.api_key not in str(download.headers)


def test_every_setting_is_mapped_to_fals_input(fake: FakeFal, provider: FalProvider) -> None:
    request = FlexRequest(prompt="p", width=512, height=384, steps=12, guidance=3.5, seed=11, safety_tolerance=4,
                          output_format="jpeg", prompt_upsampling=False)
    run(provider, request)
    assert fake.submits[0].json() == {
        "prompt": "p", "image_size": {"width": 512, "height": 384}, "num_inference_steps": 12, "guidance_scale": 3.5,
        "seed": 11, "safety_tolerance": "4", "enable_prompt_expansion": False, "output_format": "jpeg",
        "sync_mode": False}


def test_edits_go_to_the_edit_endpoint_but_poll_the_returned_urls_without_it(
    fake: FakeFal, provider: FalProvider
) -> None:
    images = (picture(320, 240), picture(64, 48))
    request = FlexRequest(prompt="make it blue", width=None, height=None, images=images)
    result = run(provider, request)
    submit = fake.submits[0]
    assert submit.path == APP + "/edit"
    body = submit.json()
    assert body["image_size"] == "auto"
    assert [uri[:22] for uri in body["image_urls"]] == ["data:image/png;base64,"] * 2
    assert all("/edit" not in r.path for r in fake.queue.requests if r.method == "GET")
    assert result.pixels.shape == (240, 320, 3)


def test_an_edit_with_an_explicit_size_sends_it(fake: FakeFal, provider: FalProvider) -> None:
    run(provider, FlexRequest(prompt="p", width=256, height=256, images=(picture(64, 64),)))
    assert fake.submits[0].json()["image_size"] == {"width": 256, "height": 256}


def test_ten_references_are_allowed_and_eleven_refused_before_sending(fake: FakeFal, provider: FalProvider) -> None:
    run(provider, FlexRequest(prompt="p", width=256, height=256, images=(picture(32, 32),) * 10))
    assert len(fake.submits[0].json()["image_urls"]) == 10
    with pytest.raises(errors.InvalidRequestError, match="at most 10 images"):
        prepare(FlexRequest(prompt="p", width=256, height=256, images=(picture(32, 32),) * 11), provider)
    assert len(fake.submits) == 1


def test_one_step_is_refused_naming_fals_range(fake: FakeFal, provider: FalProvider) -> None:
    with pytest.raises(errors.InvalidRequestError, match="steps = 1 is not allowed: from 2 to 50 on fal"):
        prepare(FlexRequest(prompt="p", steps=1), provider)
    assert fake.all_requests() == []


def test_unmappable_settings_are_sent_as_the_nearest_with_notes(fake: FakeFal, provider: FalProvider) -> None:
    prepared = prepare(FlexRequest(prompt="p", width=256, height=256, safety_tolerance=0, output_format="webp"), provider)
    assert prepared.notes == (
        "safety_tolerance 0 does not exist on fal (range 1-5): sent 1, the strictest it offers",
        "fal cannot encode webp: the image comes back as png",
    )
    generate(prepared, provider, settings=FAST)
    body = fake.submits[0].json()
    assert body["safety_tolerance"] == "1" and body["output_format"] == "png"
    assert prepare(FlexRequest(prompt="p", safety_tolerance=1, output_format="png"), provider).notes == ()


def test_the_price_is_five_cents_per_megapixel_in_and_out() -> None:
    request = FlexRequest(prompt="p", width=1920, height=1072, images=(picture(512, 512),))
    estimate = prepare(request, FalProvider(api_key=ApiKey("unused"))).estimate
    assert estimate.usd == pytest.approx(0.15) and estimate.credits == 15
    assert "fal.ai model page (2026-11-23)" in estimate.as_text() and "1 cent = $0.01" in estimate.as_text()


def test_a_completed_status_with_an_error_is_a_failure(fake: FakeFal, provider: FalProvider) -> None:
    fake.plans.append(RequestPlan(status_error=("Runner crashed", "runner_disconnected")))
    with pytest.raises(errors.GenerationFailedError, match=r"failed \(runner_disconnected\): Runner crashed"):
        run(provider)
    assert len(fake.submits) == 1 and fake.cdn.requests == []


def test_a_model_error_on_the_response_url_is_final_and_says_whether_to_retry(
    fake: FakeFal, provider: FalProvider
) -> None:
    fake.plans.append(RequestPlan(result_error=Response.json(
        {"detail": [{"loc": ["body"], "msg": "Internal error while generating", "type": "internal_server_error"}]},
        500, {"X-Fal-Retryable": "true"})))
    words = "HTTP 500.*Internal error.*running it again may work"
    with pytest.raises(errors.GenerationFailedError, match=words) as caught:
        run(provider)
    assert (caught.value.status, caught.value.billed) == (500, errors.NOT_BILLED)  # fal bills no server error
    assert len([r for r in fake.queue.requests if r.path.endswith("/status")]) == 1  # not polled past


def test_an_input_fal_rejects_shows_its_detail(fake: FakeFal, provider: FalProvider) -> None:
    fake.plans.append(RequestPlan(result_error=Response.json(
        {"detail": [{"loc": ["body", "image_urls", 0], "msg": "Could not load the image", "type": "image_load_error"}]},
        422, {"X-Fal-Retryable": "false"})))
    with pytest.raises(errors.ProviderRejectedError, match=r"HTTP 422\): image_urls.0: Could not load the image"):
        run(provider)


@pytest.mark.parametrize("where", ["status", "response"])
def test_content_policy_refusals_are_moderation(fake: FakeFal, provider: FalProvider, where: str) -> None:
    message = "The content could not be processed because it contained material flagged by a content checker."
    if where == "status":
        plan = RequestPlan(status_error=(message, "content_policy_violation"))
    else:
        plan = RequestPlan(result_error=Response.json(
            {"detail": [{"loc": ["body", "prompt"], "msg": message, "type": "content_policy_violation"}]},
            422, {"X-Fal-Retryable": "false"}))
    fake.plans.append(plan)
    with pytest.raises(errors.ModeratedError, match="content policy: .*flagged by a content checker") as caught:
        run(provider)
    assert caught.value.stage == "request"


def test_an_image_flagged_by_the_safety_checker_is_moderation(fake: FakeFal, provider: FalProvider) -> None:
    fake.plans.append(RequestPlan(nsfw=True))
    with pytest.raises(errors.ModeratedError, match="safety checker withheld the image") as caught:
        run(provider)
    assert caught.value.stage == "content" and fake.cdn.requests == []


def test_a_gateway_error_on_the_response_url_is_read_again(fake: FakeFal, provider: FalProvider) -> None:
    plan = RequestPlan(statuses=["COMPLETED"], result_error=Response(502, b"<html>Bad Gateway</html>"))
    fake.plans.append(plan)
    statuses: list[str] = []

    def clear_after_first_failure(fraction: float | None, status: str) -> None:
        statuses.append(status)
        if "retrying" in status:
            plan.result_error = None

    assert run(provider, hooks=RunHooks(on_progress=clear_after_first_failure)).pixels.shape == (256, 320, 3)
    assert any("HTTP 502" in status for status in statuses) and len(fake.submits) == 1


@pytest.mark.parametrize(
    ("status", "detail", "error", "words"),
    [
        (401, "Authentication is required to access this application.", errors.AuthenticationError,
         "rejected the API key .*Authentication is required"),
        (403, "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing.",
         errors.InsufficientCreditsError, "locked the account .*Exhausted balance.*The key is valid"),
        (422, [{"loc": ["body", "num_inference_steps"], "msg": "Input should be less than or equal to 50",
                "type": "less_than_equal"}], errors.ProviderRejectedError, "num_inference_steps: Input should be"),
    ],
)
def test_submit_errors_show_fals_detail(fake, provider, status, detail, error, words) -> None:
    fake.submit_script.append(Response.json({"detail": detail}, status, {"X-Fal-Retryable": "false"}))
    with pytest.raises(error, match=words) as caught:
        run(provider)
    assert (caught.value.provider, caught.value.status, caught.value.billed) == ("fal", status, errors.NOT_BILLED)
    assert len(fake.submits) == 1


def test_status_and_response_urls_off_the_api_host_never_get_the_key(fake: FakeFal, provider: FalProvider) -> None:
    fake.submit_script.append(Response.json({
        "request_id": "r1", "status_url": "http://localhost:9/requests/r1/status",
        "response_url": "http://localhost:9/requests/r1", "cancel_url": "http://localhost:9/requests/r1/cancel"}))
    with pytest.raises(errors.UnsafeUrlError, match="will not send your API key"):
        run(provider)
    assert len(fake.queue.requests) == 1


@pytest.mark.parametrize("status", ["FAILED", "CANCELED"])
def test_an_ended_request_is_reported_at_once_instead_of_polled_to_the_timeout(fake: FakeFal, provider: FalProvider,
                                                                               status: str) -> None:
    fake.plans.append(RequestPlan(statuses=["IN_PROGRESS", status]))
    with pytest.raises(errors.GenerationFailedError, match=f"ended as {status}") as caught:
        run(provider, settings=RunSettings(task_timeout_seconds=600.0))
    assert caught.value.provider == "fal" and caught.value.task_id and caught.value.task_id in str(caught.value)
    assert len(fake.submits) == 1
    assert len([r for r in fake.queue.requests if r.path.endswith("/status")]) == 2
