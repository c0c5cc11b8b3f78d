"""Every provider in the engine's registry, against its loopback stand-in: the same story for all.

Each test runs once per provider name the engine knows (PROVIDER_NAMES), so a provider added to
the registry is covered here at once; without a stand-in in tests/fakes it fails. What differs
between providers (their bodies, their error shapes, their own limits) is in
test_provider_<name>.py.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.cli import main
from comfyui_flux2_flex.nodes.engine.durable import generate_cached
from comfyui_flux2_flex.nodes.engine.journal import DELIVERED, SUBMITTED, TaskJournal
from comfyui_flux2_flex.nodes.engine.keys import ApiKey
from comfyui_flux2_flex.nodes.engine.providers import PROVIDER_NAMES, make_provider
from comfyui_flux2_flex.nodes.engine.providers.base import Provider
from comfyui_flux2_flex.nodes.engine.request import LOSSLESS_UPLOAD_FORMAT, UPLOAD_FORMATS, FlexRequest, InputImage
from comfyui_flux2_flex.nodes.engine.runner import RunHooks, RunSettings, prepare
from comfyui_flux2_flex.nodes.engine.transport import retry_after_seconds

from fakes.loopback import LoopbackFake, Response
from fakes.stand_ins import STAND_INS, StandIn
from provider_runs import FAST, FOX, run

@pytest.fixture(params=PROVIDER_NAMES)
def name(request: pytest.FixtureRequest) -> str:
    """Each provider name the engine's registry holds."""
    return request.param


def test_a_request_is_submitted_once_polled_with_the_key_and_downloaded_without_it(
    name: str, stand_in: StandIn, fake: LoopbackFake, key: str, provider: Provider
) -> None:
    result = run(provider)
    assert result.pixels.shape == (256, 320, 3) and result.provider == name and result.task_id
    assert len(fake.submits) == 1
    keyed = [r for r in fake.all_requests() if r.headers.get(provider.key_header.lower()) == provider.key_prefix + key]
    keyless = [r for r in fake.all_requests() if r not in keyed and r not in fake.metadata_reads]
    if stand_in.synchronous:  # the answer to the one keyed POST is the image or a link to it
        assert keyed == fake.submits
    assert fake.submits[0] in keyed and bool(keyless) == stand_in.delivers_link, "a link is fetched without the key"
    assert all(key not in str(r.headers) for r in keyless)


def test_an_injected_http_client_carries_every_request_downloads_included(name: str, stand_in: StandIn,
                                                                         fake: LoopbackFake, key: str) -> None:
    sent: list[str] = []
    client = httpx.Client(event_hooks={"request": [lambda request: sent.append(str(request.url))]})
    provider = make_provider(name, base_url=fake.api_url, api_key=ApiKey(key), client=client, environ={})
    with client:
        run(provider)
    # submit, at least one poll, the download; a synchronous provider's one POST brings the image
    assert len(sent) == len(fake.all_requests()) >= (1 if stand_in.synchronous else 3)


def test_a_setting_out_of_range_is_refused_before_anything_is_sent(name: str, fake: LoopbackFake,
                                                                    provider: Provider) -> None:
    with pytest.raises(errors.InvalidRequestError) as caught:
        prepare(FlexRequest(prompt="p", steps=80), provider)
    assert (caught.value.field, caught.value.value, caught.value.billed) == ("steps", 80, errors.NOT_BILLED)
    assert "from 1 to 50" in caught.value.allowed or "to 50 on" in caught.value.allowed
    assert fake.all_requests() == []


def test_a_wrong_key_is_refused_and_never_shown(name: str, fake: LoopbackFake) -> None:
    wrong = "wrong-key-0123456789"
    provider = make_provider(name, base_url=fake.api_url, api_key=ApiKey(wrong), environ={})
    with pytest.raises(errors.AuthenticationError) as caught:
        run(provider)
    error = caught.value
    assert (error.provider, error.status in (401, 403), error.billed) == (name, True, errors.NOT_BILLED)
    assert wrong not in str(error) and len(fake.submits) == 1


@pytest.mark.parametrize("status", [500, 503])  # no provider documents that a 503 means nothing was created
def test_a_server_error_on_submit_is_never_resent(name: str, fake: LoopbackFake, provider: Provider,
                                                  status: int) -> None:
    fake.submit_script.append(Response(status, b"Server Error", {"Retry-After": "0"}))
    with pytest.raises(errors.SubmitOutcomeUnknown) as caught:
        run(provider)
    assert (caught.value.provider, caught.value.status, caught.value.billed) == (name, status, errors.MAYBE_BILLED)
    assert len(fake.submits) == 1


def test_an_answer_lost_after_the_request_was_sent_is_never_resent(name: str, fake: LoopbackFake,
                                                                  provider: Provider) -> None:
    fake.submit_script.append(Response.lost())  # the request arrived; the connection closes unanswered
    with pytest.raises(errors.SubmitOutcomeUnknown, match="may have been created and billed") as caught:
        run(provider)
    assert (caught.value.provider, caught.value.billed) == (name, errors.MAYBE_BILLED)
    assert len(fake.submits) == 1


@pytest.mark.parametrize("retry_after", ["0.1", "Thu, 01 Jan 1970 00:00:00 GMT"])  # seconds, or a date gone by
def test_a_busy_answer_on_submit_waits_and_submits_again(name: str, fake: LoopbackFake, provider: Provider,
                                                         retry_after: str) -> None:
    fake.submit_script.append(Response.json({"detail": "Too many requests"}, 429, {"Retry-After": retry_after}))
    statuses: list[str] = []
    run(provider, hooks=RunHooks(on_progress=lambda fraction, status: statuses.append(status)))
    assert len(fake.submits) == 2 and any("HTTP 429" in status for status in statuses)


def test_a_gateway_error_while_polling_keeps_polling_the_same_task(name: str, stand_in: StandIn, fake: LoopbackFake,
                                                                  provider: Provider) -> None:
    if stand_in.synchronous:
        pytest.skip("a synchronous provider answers the submit with the image: there is no poll")
    fake.plans.append(stand_in.plan(poll_http_errors={0: 502}))
    statuses: list[str] = []
    assert run(provider, hooks=RunHooks(on_progress=lambda f, s: statuses.append(s))).pixels.shape == (256, 320, 3)
    assert len(fake.submits) == 1 and any("HTTP 502" in status for status in statuses)


def test_a_failed_task_names_itself_and_is_not_resubmitted(name: str, stand_in: StandIn, fake: LoopbackFake,
                                                           provider: Provider) -> None:
    fake.plans.append(stand_in.failed("GPU worker crashed"))
    with pytest.raises(errors.GenerationFailedError, match="GPU worker crashed") as caught:
        run(provider)
    named = stand_in.synchronous or (caught.value.task_id and caught.value.task_id in str(caught.value))
    assert caught.value.provider == name and named  # a refused synchronous request has no task to name
    assert caught.value.billed in (errors.MAYBE_BILLED, errors.NOT_BILLED, errors.REFUNDED)
    assert len(fake.submits) == 1


def test_moderation_is_a_moderation_error_naming_the_task(name: str, stand_in: StandIn, fake: LoopbackFake,
                                                          provider: Provider) -> None:
    fake.plans.append(stand_in.moderated())
    with pytest.raises(errors.ModeratedError) as caught:
        run(provider)
    assert caught.value.provider == name and (stand_in.synchronous or caught.value.task_id) and caught.value.reasons
    assert len(fake.submits) == 1


def test_cancelling_a_submitted_task_names_it_as_billed(name: str, stand_in: StandIn, fake: LoopbackFake,
                                                        provider: Provider) -> None:
    fake.plans.append(stand_in.running())
    submitted = threading.Event()
    with pytest.raises(errors.CancelledError) as caught:
        run(provider, hooks=RunHooks(is_cancelled=submitted.is_set, on_submitted=lambda task: submitted.set()))
    error = caught.value
    assert (error.provider, error.billed) == (name, errors.BILLED) and error.task_id in str(error)
    assert len(fake.submits) == 1


def test_a_run_that_ends_before_its_task_does_is_resumed_by_a_rerun_without_paying_again(
    name: str, stand_in: StandIn, fake: LoopbackFake, provider: Provider, tmp_path: Path
) -> None:
    if stand_in.synchronous:
        pytest.skip("a synchronous provider's task is finished when its submit returns: no run ends before it")
    fake.plans.append(stand_in.plan(poll_http_errors={0: 502}))  # the first poll finds nothing finished
    journal = TaskJournal(tmp_path / "journal")
    prepared = prepare(FOX, provider)
    with pytest.raises(errors.GenerationTimeoutError) as timed_out:
        generate_cached(prepared, provider, None, journal=journal, settings=RunSettings(task_timeout_seconds=0.0))
    task_id = timed_out.value.task_id
    assert f"flux-flex recover {task_id}" in str(timed_out.value) and journal.find(task_id).state == SUBMITTED
    result = generate_cached(prepared, provider, None, journal=journal, settings=FAST)
    assert result.task_id == task_id and result.pixels.shape == (256, 320, 3) and "resumed" in result.report()
    assert len(fake.submits) == 1 and journal.find(task_id).state == DELIVERED


def test_the_key_is_in_no_log_error_report_or_cli_output(
    name: str, stand_in: StandIn, fake: LoopbackFake, key: str, provider: Provider, caplog, capsys,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    texts = [repr(provider), str(vars(provider)), repr(provider.api_key), f"{provider.api_key}"]
    fake.submit_script.append(Response.json({"detail": "bad request"}, 422))
    fake.plans.append(stand_in.failed("boom"))
    for _ in range(2):
        with pytest.raises(errors.FluxFlexError) as caught:
            run(provider)
        texts += [str(caught.value), repr(vars(caught.value))]
    texts.append(run(provider).report())
    monkeypatch.setenv(provider.key_env_var, key)
    monkeypatch.setenv(provider.base_url_env_var(), fake.api_url)
    out_file = tmp_path / "cli.png"
    assert main(["generate", "--provider", name, "--prompt", FOX.prompt, "--width", "320", "--height", "256",
                 "--seed", "5", "--out", str(out_file)]) == 0
    with Image.open(out_file) as saved:
        assert saved.size == (320, 256)
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    assert f"{name} task " in captured.out and "seed 5" in captured.out
    assert "HTTP Request" in caplog.text, "httpx logs requests at DEBUG, so real log lines are checked"
    assert all(key not in text for text in texts)


def test_the_dry_run_prints_the_url_it_would_post_to(name: str, fake: LoopbackFake, key: str, provider: Provider,
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv(provider.key_env_var, key)
    monkeypatch.setenv(provider.base_url_env_var(), fake.api_url)
    assert main(["generate", "--provider", name, "--prompt", "fox", "--out", str(tmp_path / "o.png"),
                 "--dry-run"]) == 0
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line == f"POST {provider.submit_url(FOX)} ({provider.label})"
    assert first_line.startswith(f"POST {fake.api_url}/") and fake.all_requests() == fake.metadata_reads


def uploaded_images(body: object) -> list[Image.Image]:
    """Every image a submitted JSON body carries, raw base64 or a data: URI, wherever it sits."""
    if isinstance(body, dict):
        return [image for value in body.values() for image in uploaded_images(value)]
    if isinstance(body, list):
        return [image for value in body for image in uploaded_images(value)]
    if isinstance(body, str) and len(body) > 64 and " " not in body:
        return [Image.open(io.BytesIO(base64.b64decode(body.split(",", 1)[-1])))]
    return []


@pytest.mark.parametrize("upload_format", UPLOAD_FORMATS)
def test_each_upload_format_is_sent_where_documented_and_refused_before_sending_elsewhere(
    name: str, fake: LoopbackFake, provider: Provider, upload_format: str
) -> None:
    reference = InputImage(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    request = FlexRequest(prompt="p", width=256, height=256, images=(reference,), upload_format=upload_format)
    if upload_format not in provider.limits.upload_formats:
        with pytest.raises(errors.InvalidRequestError, match=f"upload_format.*{upload_format}.*png"):
            run(provider, request)
        assert fake.all_requests() == []
        return
    run(provider, request)
    (sent,) = uploaded_images(fake.submits[0].json())
    assert sent.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[upload_format] and sent.size == (64, 48)
    if upload_format == LOSSLESS_UPLOAD_FORMAT:
        assert np.array_equal(np.asarray(sent), reference.pixels)


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date
    assert retry_after_seconds("3", now=now) == 3.0
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:47 GMT", now=now) == 10.0
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:27 GMT", now=now) == 0.0
    assert retry_after_seconds("soon", now=now) is None and retry_after_seconds(None) is None


def test_every_provider_has_a_stand_in_and_every_stand_in_a_provider() -> None:
    assert set(STAND_INS) == set(PROVIDER_NAMES)
