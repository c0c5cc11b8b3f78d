"""OpenRouter's Image API against a loopback OpenRouter: what is sent, every way a request ends.

OpenRouter answers the one POST with the finished image, so these tests also show that a
synchronous provider is never sent the same request twice when the answer is lost.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.cli import main
from comfyui_flux2_flex.nodes.engine.keys import ApiKey
from comfyui_flux2_flex.nodes.engine.errors import SubmitOutcomeUnknown
from comfyui_flux2_flex.nodes.engine.providers.openrouter import OpenRouterProvider
from comfyui_flux2_flex.nodes.engine.providers.tasks import SubmittedTask
from comfyui_flux2_flex.nodes.engine.request import FlexRequest
from comfyui_flux2_flex.nodes.engine.runner import RunHooks, prepare
from comfyui_flux2_flex.nodes.logic.node_runs import NodeSettings, estimate_cost, run_settings
from comfyui_flux2_flex.nodes.logic.price_preview import preview_price

from fakes.loopback import Response
from fakes.openrouter_server import NO_SIZE, FakeOpenRouter, error, size_for
from provider_runs import picture, run


@pytest.fixture
def name() -> str:
    """The provider these tests are about (the conftest fixtures `fake` and `provider` follow it)."""
    return "openrouter"


def test_one_post_brings_the_image_at_the_exact_size_and_what_openrouter_charged(
    fake: FakeOpenRouter, provider: OpenRouterProvider
) -> None:
    result = run(provider)
    assert result.pixels.shape == (256, 320, 3) and result.seed == 7
    (record, post) = fake.server.requests
    assert (record.method, "authorization" in record.headers) == ("GET", False), "the free record, without the key"
    assert (post.method, post.path) == ("POST", "/api/v1/images")
    assert post.headers["authorization"] == f"Bearer {fake.api_key}" and post.json()["size"] == "320x256"
    report = result.report()
    assert "openrouter: $0.060 (6 cents); openrouter reported 6 cents" in report and "aspect" not in report


def test_what_the_endpoint_takes_is_learned_once() -> None:
    with FakeOpenRouter() as fake:
        provider = OpenRouterProvider(base_url=fake.api_url, api_key=ApiKey(fake.api_key))
        for _ in range(3):
            run(provider)
        assert len(fake.metadata_reads) == 1 and len(fake.submits) == 3


@pytest.mark.parametrize(("size_values", "sent", "made", "before_run", "in_report"), [
    (NO_SIZE, {"aspect_ratio": "4:3"}, size_for("4:3"), "aspect 4:3 only: OpenRouter picks the size",
     "lists no size parameter): it was asked for aspect ratio 4:3 (nearest to 512x384)"),
    (["1024x1024", "1024x768", "768x1024"], {"size": "1024x768"}, (1024, 768), "makes 1024x768, the nearest it can",
     "1024x768, the nearest to 512x384, was asked for"),
])
def test_a_size_the_endpoint_cannot_make_is_made_as_near_as_it_can_and_said_before_run(
        monkeypatch: pytest.MonkeyPatch, size_values, sent: dict, made: tuple[int, int], before_run: str,
        in_report: str) -> None:
    with FakeOpenRouter(size_values=size_values) as fake:
        monkeypatch.setenv("FLUX_FLEX_OPENROUTER_URL", fake.api_url)
        preview = preview_price(NodeSettings(provider="openrouter", prompt="p", width=512, height=384))
        provider = OpenRouterProvider(base_url=fake.api_url, api_key=ApiKey(fake.api_key))
        result = run(provider, FlexRequest(prompt="p", width=512, height=384, seed=1))
    assert before_run in preview.text and in_report in result.report()
    assert result.pixels.shape == (made[1], made[0], 3) and sent.items() <= fake.generated[0].items()


def test_an_endpoint_record_that_cannot_be_read_means_an_aspect_ratio_and_is_not_asked_for_at_every_run() -> None:
    with FakeOpenRouter() as fake:
        fake.record_readable = False
        provider = OpenRouterProvider(base_url=fake.api_url, api_key=ApiKey(fake.api_key))
        results = [run(provider) for _ in range(2)]
    assert [body["aspect_ratio"] for body in fake.generated] == ["5:4", "5:4"] and len(fake.metadata_reads) == 1
    assert "(its endpoint record could not be read): it was asked for aspect ratio 5:4" in results[0].report()


def test_every_setting_is_mapped_to_the_image_api(fake: FakeOpenRouter, provider) -> None:
    request = FlexRequest(prompt="p", width=1920, height=1072, steps=12, guidance=3.5, seed=11, safety_tolerance=4,
                          output_format="jpeg")
    run(provider, request)
    assert fake.generated == [{
        "model": "black-forest-labs/flux.2-flex", "prompt": "p", "size": "1920x1072", "output_format": "jpeg",
        "seed": 11,
        "provider": {"options": {"black-forest-labs": {"steps": 12, "guidance": 3.5, "safety_tolerance": 4}}},
    }]


def test_references_go_as_data_urls_and_the_size_follows_the_first(fake, provider) -> None:
    request = FlexRequest(prompt="make it blue", width=None, height=None,
                          images=(picture(300, 400), picture(64, 48)))
    result = run(provider, request)
    (body,) = fake.generated
    assert body["size"] == "304x400"  # the first reference's size, rounded to multiples of 16
    assert [ref["image_url"]["url"][:22] for ref in body["input_references"]] == ["data:image/png;base64,"] * 2
    assert "reported 18 cents" in result.report()  # 1 MP out and 1 MP for each reference, at 6 cents


def test_eight_references_are_allowed_and_nine_refused_before_sending(fake, provider) -> None:
    run(provider, FlexRequest(prompt="p", width=256, height=256, images=(picture(32, 32),) * 8))
    assert len(fake.generated[0]["input_references"]) == 8
    with pytest.raises(errors.InvalidRequestError, match="at most 8 images"):
        prepare(FlexRequest(prompt="p", width=256, height=256, images=(picture(32, 32),) * 9), provider)
    assert len(fake.submits) == 1


def test_prompt_upsampling_off_is_reported_because_it_cannot_be_passed(provider) -> None:
    notes = prepare(FlexRequest(prompt="p", prompt_upsampling=False), provider).notes
    assert any("prompt_upsampling off cannot be passed through OpenRouter" in note for note in notes)
    assert not any("prompt_upsampling" in note for note in prepare(FlexRequest(prompt="p"), provider).notes)


def test_the_price_is_six_cents_per_megapixel_in_and_out() -> None:
    request = FlexRequest(prompt="p", width=1920, height=1072, images=(picture(512, 512),))
    estimate = prepare(request, OpenRouterProvider(api_key=ApiKey("unused"))).estimate
    assert estimate.usd == pytest.approx(0.18) and estimate.credits == 18
    assert "OpenRouter's model page for black-forest-labs/flux.2-flex" in estimate.as_text()


@pytest.mark.parametrize(
    ("answer", "reasons"),
    [
        (error(400, "Input flagged by the provider's content filter", error_type="content_policy_violation"),
         ("Input flagged by the provider's content filter",)),
        (error(403, "Your chosen model requires moderation and your input was flagged",
               reasons=["sexual", "violence"], flagged_input="...", provider_name="BFL",
               model_slug="black-forest-labs/flux.2-flex"), ("sexual", "violence")),
        (error(502, "Provider returned error: Request Moderated"), ("Provider returned error: Request Moderated",)),
    ],
)
def test_moderation_refusals_are_moderated_errors(fake, provider, answer, reasons) -> None:
    fake.submit_script.append(answer)
    with pytest.raises(errors.ModeratedError, match="refused the request in moderation") as caught:
        run(provider)
    assert caught.value.stage == "request" and caught.value.reasons == reasons
    assert len(fake.submits) == 1


@pytest.mark.parametrize(
    ("answer", "error_type", "words"),
    [
        (error(401, "User not found.", error_type="authentication"), errors.AuthenticationError,
         "rejected the API key .*User not found"),
        (error(402, "Insufficient credits. Add more using https://openrouter.ai/credits",
               error_type="payment_required"), errors.InsufficientCreditsError, "no credits.*Insufficient credits"),
        (error(403, "Key limit exceeded", error_type="permission_denied"), errors.AuthenticationError, "HTTP 403"),
        (error(400, "aspect_ratio: Invalid enum value", error_type="invalid_request"), errors.ProviderRejectedError,
         "HTTP 400.*aspect_ratio"),
        (error(413, "Request payload too large"), errors.ProviderRejectedError, "HTTP 413"),
        (error(502, "Provider returned error", error_type="provider_unavailable"), errors.GenerationFailedError,
         "could not finish the image .*not charged"),
        (error(408, "Request timed out"), errors.GenerationFailedError, "HTTP 408.*not charged"),
    ],
)
def test_each_documented_failure_has_its_own_words_and_is_sent_once(fake, provider, answer,
                                                                    error_type, words) -> None:
    fake.submit_script.append(answer)
    with pytest.raises(error_type, match=words):
        run(provider)
    assert len(fake.submits) == 1 and fake.generated == []


def test_an_overloaded_provider_means_nothing_was_made_so_it_waits_and_sends_again(fake, provider) -> None:
    busy = error(529, "Provider returned error")
    busy.headers["Retry-After"] = "0.1"
    fake.submit_script.append(busy)
    run(provider)
    assert len(fake.submits) == 2 and len(fake.generated) == 1


@pytest.mark.parametrize(
    ("answer", "error_type", "words"),
    [
        (Response(200, b"<html>upstream</html>", {"Content-Type": "text/html"}), SubmitOutcomeUnknown,
         "not a JSON object.*may have been created"),
        (Response.json({"created": 1, "data": [], "usage": {"cost": 0.06}}), SubmitOutcomeUnknown,
         r"without an image \(it reported \$0.06\).*not resent"),
        (Response.json({"created": 1, "data": [{"b64_json": "bm90IGFuIGltYWdl"}]}), errors.ImageDecodeError,
         "not an image"),
    ],
)
def test_malformed_answers_are_never_resent(fake, provider, answer, error_type, words) -> None:
    fake.submit_script.append(answer)
    with pytest.raises(error_type, match=words):
        run(provider)
    assert len(fake.submits) == 1


def test_cli_generates_with_openrouter(fake, monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", fake.api_key)
    monkeypatch.setenv("FLUX_FLEX_OPENROUTER_URL", fake.api_url)
    out_file = tmp_path / "x.png"
    assert main(["generate", "--provider", "openrouter", "--prompt", "fox", "--width", "1024", "--height", "1024",
                 "--seed", "5", "--out", str(out_file)]) == 0
    with Image.open(out_file) as saved:
        assert saved.size == (1024, 1024) and saved.format == "PNG"
    out = capsys.readouterr().out
    assert "openrouter: $0.060" in out and "seed 5" in out and "aspect" not in out
    assert fake.api_key not in out


def test_overload_is_retried_a_few_spaced_times_then_reported(fake, provider) -> None:
    """Finding 4 of issue 22: a 529 with a one-second Retry-After was sent again for two minutes."""
    for _ in range(10):
        busy = error(529, "Provider returned error")
        busy.headers["Retry-After"] = "0.01"
        fake.submit_script.append(busy)
    with pytest.raises(errors.ProviderUnavailableError, match="still overloaded after 4 tries.*Nothing was made") \
            as caught:
        run(provider)
    assert caught.value.billed == errors.NOT_BILLED and len(fake.submits) == 4


def cli_generate(fake: FakeOpenRouter, monkeypatch, out: Path) -> int:
    monkeypatch.setenv("OPENROUTER_API_KEY", fake.api_key)
    monkeypatch.setenv("FLUX_FLEX_OPENROUTER_URL", fake.api_url)
    return main(["generate", "--provider", "openrouter", "--prompt", "fox", "--width", "1024", "--height", "1024",
                 "--seed", "5", "--out", str(out)])


def test_an_answer_without_an_image_is_journaled_so_a_rerun_asks_first(fake, monkeypatch, tmp_path: Path,
                                                                        capsys) -> None:
    """Finding 4 of issue 22: a 200 without an image was not journaled, so the rerun paid at once."""
    fake.submit_script.append(Response.json({"created": 1, "data": [], "usage": {"cost": 0.06}}))
    assert cli_generate(fake, monkeypatch, tmp_path / "x.png") == 1
    assert "without an image" in capsys.readouterr().err
    assert main(["tasks"]) == 0 and "outcome unknown" in capsys.readouterr().out
    assert cli_generate(fake, monkeypatch, tmp_path / "x.png") == 1
    assert "Not sent" in capsys.readouterr().err and len(fake.submits) == 1
    assert cli_generate(fake, monkeypatch, tmp_path / "x.png") == 0 and len(fake.submits) == 2


def test_a_garbled_image_answer_says_plainly_it_cannot_be_recovered(fake, monkeypatch, tmp_path: Path,
                                                                     capsys) -> None:
    """Finding 4 of issue 22: the advice was `recover` or a rerun that resumes, and neither can work."""
    fake.submit_script.append(Response.json({"created": 1, "data": [{"b64_json": "bm90IGFuIGltYWdl"}]}))
    assert cli_generate(fake, monkeypatch, tmp_path / "x.png") == 1
    err = capsys.readouterr().err
    assert "cannot be recovered" in err and "running again pays for a new image" in err
    assert "flux-flex recover" not in err and "resumes" not in err
    assert main(["tasks"]) == 0 and "No paid task is waiting" in capsys.readouterr().out
    assert cli_generate(fake, monkeypatch, tmp_path / "x.png") == 0 and len(fake.submits) == 2


def test_cli_estimate_needs_no_key(capsys) -> None:
    assert main(["estimate", "--provider", "openrouter", "--prompt", "fox", "--width", "2048", "--height",
                 "1024"]) == 0
    assert "openrouter: $0.120 (12 cents)" in capsys.readouterr().out


def test_chosen_on_the_node_a_batch_comes_back_with_its_report_and_price(fake, monkeypatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", fake.api_key)
    monkeypatch.setenv("FLUX_FLEX_OPENROUTER_URL", fake.api_url)
    node = NodeSettings(provider="openrouter", prompt="a poster", width=1024, height=1024, seed=42, batch_size=2)
    result = run_settings(node, RunHooks())
    assert tuple(result.images.shape) == (2, 1024, 1024, 3)
    assert sorted(body["seed"] for body in fake.generated) == [42, 43]
    assert "openrouter reported 6 cents" in result.report and "aspect" not in result.report
    preview = preview_price(node)
    assert preview.text == f"${estimate_cost(node).usd:.3f} · 1024x1024" == "$0.120 · 1024x1024"


def test_a_paid_request_read_back_from_the_journal_cannot_be_fetched_again(provider) -> None:
    """The journal of paid tasks never holds the image, and OpenRouter keeps nothing to poll."""
    restored = SubmittedTask(provider="openrouter", task_id="created 1795455585", poll_url="")
    with pytest.raises(errors.ResultExpiredError, match="with the image itself, so it cannot be fetched") as caught:
        provider.poll(restored, polls_so_far=0)
    assert (caught.value.task_id, caught.value.billed) == ("created 1795455585", errors.BILLED)
