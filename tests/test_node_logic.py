"""What the nodes do, told as a user's stories, without ComfyUI: the node classes only adapt these."""

from __future__ import annotations

import stat

import jsonata
import pytest
import torch

from comfyui_flux2_flex.nodes.engine.errors import InvalidRequestError, MissingApiKeyError
from comfyui_flux2_flex.nodes.engine.keys import resolve_api_key, use_stored_keys_file
from comfyui_flux2_flex.nodes.engine.runner import RunHooks
from comfyui_flux2_flex.nodes.key_store import KeyStore
from comfyui_flux2_flex.nodes.node_logic import NodeSettings, check_settings, estimate_cost, run_settings
from comfyui_flux2_flex.nodes.price_badge import price_badge_expression
from comfyui_flux2_flex.nodes.references import collect_references
from fakes.bfl_server import FakeBfl, TaskPlan


@pytest.fixture
def bfl_env(fake_bfl: FakeBfl, monkeypatch: pytest.MonkeyPatch) -> FakeBfl:
    monkeypatch.setenv("BFL_API_KEY", fake_bfl.api_key)
    monkeypatch.setenv("FLUX_FLEX_BFL_URL", fake_bfl.api_url)
    return fake_bfl


def settings(**changes) -> NodeSettings:
    base = dict(provider="bfl", prompt='a poster that says "FLEX"', width=256, height=192, seed=42, steps=4)
    return NodeSettings(**{**base, **changes})


def image_batch(frames: int, height: int, width: int) -> torch.Tensor:
    return torch.rand(frames, height, width, 3, generator=torch.Generator().manual_seed(frames))


def test_generate_a_batch_runs_at_once_with_counting_seeds(bfl_env: FakeBfl) -> None:
    for _ in range(3):
        bfl_env.plans.append(TaskPlan(latency=0.8))
    result = run_settings(settings(batch_size=3), RunHooks())
    assert tuple(result.images.shape) == (3, 192, 256, 3) and result.images.dtype == torch.float32
    assert sorted(r.json()["seed"] for r in bfl_env.submits) == [42, 43, 44]
    assert bfl_env.peak_active == 3, "all three tasks were in flight together"
    assert result.seed == 42 and result.reported_cost == 15.0
    assert result.report.startswith("3 images, estimated $0.150 in all")


def test_images_come_back_in_seed_order(bfl_env: FakeBfl) -> None:
    result = run_settings(settings(batch_size=2), RunHooks())
    tints = [frame[0, 0].tolist() for frame in result.images]
    one = run_settings(settings(seed=43), RunHooks())
    assert tints[1] == one.images[0, 0, 0].tolist()


def test_one_failed_image_keeps_the_others_and_says_which(bfl_env: FakeBfl) -> None:
    bfl_env.plans.extend([TaskPlan(), TaskPlan(statuses=["Pending", "Error"], details={"error": "boom"}), TaskPlan()])
    result = run_settings(settings(batch_size=3), RunHooks())
    assert result.images.shape[0] == 2
    failed_seed = next(t.body["seed"] for t in bfl_env.tasks.values() if t.plan.statuses[-1] == "Error")
    assert result.report.startswith(f"1 of 3 images failed:\nimage {failed_seed - 41} (seed {failed_seed})")
    assert "boom" in result.report


def test_edit_keeps_each_frames_size_rounded_to_16_and_sends_the_frame_first(bfl_env: FakeBfl) -> None:
    frames = image_batch(2, 100, 150)
    refs = collect_references([("image_1", image_batch(1, 64, 64))])
    result = run_settings(settings(), RunHooks(), edit_image=frames, references=refs)
    assert tuple(result.images.shape) == (2, 96, 144, 3)
    bodies = sorted((r.json() for r in bfl_env.submits), key=lambda body: body["seed"])
    assert [b["width"] for b in bodies] == [144, 144] and bodies[0]["input_image"] != bodies[1]["input_image"]
    assert all("input_image_2" in b and "input_image_3" not in b for b in bodies)
    assert "size 150x100 adjusted to 144x96" in result.report


def test_edit_size_override(bfl_env: FakeBfl) -> None:
    result = run_settings(settings(aspect_ratio="1:1", megapixels=0.5), RunHooks(), edit_image=image_batch(1, 64, 64),
                          match_input_size=False)
    assert result.images.shape[1] == result.images.shape[2] == 720


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 80}, "steps = 80 is not allowed: from 1 to 50."),
        ({"width": 1000}, "width = 1000 is not allowed: a multiple of 16"),
        ({"prompt": " "}, "prompt = ' ' is not allowed"),
        ({"batch_size": 0}, "batch_size = 0 is not allowed: from 1 to 16."),
        ({"seed": 2**32 - 1, "batch_size": 2}, "at most 4294967294 with batch_size 2"),
        ({"provider": "nope"}, "provider = 'nope' is not allowed"),
        ({"provider": "fal", "steps": 1}, "fal"),
        ({"aspect_ratio": "7:3"}, "aspect_ratio = '7:3' is not allowed"),
    ],
)
def test_validation_gives_the_engines_message(changes, message) -> None:
    assert message in check_settings(settings(**changes))


def test_valid_settings_pass_validation_without_a_key() -> None:
    assert check_settings(settings()) is None


def test_cost_estimate_needs_no_key_and_counts_everything_sent() -> None:
    refs = collect_references([("image_1", image_batch(2, 1024, 1024))])
    estimate = estimate_cost(settings(width=1024, height=1024, batch_size=2), references=refs)
    assert estimate.credits == 2 * (5 + 5 + 5) and estimate.usd == pytest.approx(0.30)
    edit = estimate_cost(settings(), edit_image=image_batch(3, 600, 1000))
    assert edit.credits == 3 * 10 and "size 1000x600 adjusted to 1008x608" in edit.as_text()
    with pytest.raises(MissingApiKeyError):
        resolve_api_key("bfl", "BFL_API_KEY", environ={}, stored={})


def test_unknown_prices_are_said_not_invented() -> None:
    estimate = estimate_cost(settings(provider="replicate", width=512, height=512))
    assert estimate.usd is None and "price unknown" in estimate.summary()


def test_reference_batch_chains_in_order_and_refuses_a_ninth_image() -> None:
    first = collect_references([("image_1", image_batch(5, 64, 64))])
    second = collect_references([("image_2", image_batch(1, 80, 64)), ("image_3", None)], first)
    assert len(second.images) == 6 and second.images[5].height == 80
    with pytest.raises(InvalidRequestError, match=r"image_1 \(frame 3\).*at most 8 reference images"):
        collect_references([("image_1", image_batch(3, 64, 64))], second)


def test_reference_batch_downscales_out_loud() -> None:
    refs = collect_references([("image_1", torch.zeros(1, 2100, 2100, 3))])
    assert refs.images[0].width * refs.images[0].height <= 4 * 1024 * 1024
    assert "image_1 downscaled from 2100x2100" in refs.summary()


def test_stored_keys_are_owner_only_and_used_by_the_engine(tmp_path) -> None:
    path = tmp_path / "user" / "flux2_flex" / "keys.json"
    store = KeyStore(path, ("bfl", "fal"))
    store.save("fal", "fal-secret-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.names() == {"bfl": [], "fal": ["default"]}
    use_stored_keys_file(path)
    try:
        assert resolve_api_key("fal", "FAL_KEY", environ={}).reveal() == "fal-secret-1"
        assert resolve_api_key("fal", "FAL_KEY", environ={"FAL_KEY": "env-wins"}).reveal() == "env-wins"
    finally:
        use_stored_keys_file(None)
    store.save("fal", "")
    assert store.names()["fal"] == []
    with pytest.raises(InvalidRequestError, match="provider"):
        store.save("other", "x")
    with pytest.raises(InvalidRequestError, match="single token") as caught:
        store.save("bfl", "two words")
    assert "two words" not in str(caught.value)


def badge(expression: str, connected: bool = False, **widgets) -> dict:
    values = {"provider": "bfl", "aspect_ratio": "custom", "megapixels": "1", "width": 1024, "height": 1024,
              "batch_size": 1, **widgets}
    return jsonata.Jsonata(expression).evaluate({"widgets": values, "inputs": {"references": {"connected": connected}},
                                                 "inputGroups": {}})


@pytest.mark.parametrize(
    "widgets",
    [{}, {"width": 1920, "height": 1072}, {"aspect_ratio": "16:9", "megapixels": "2"}, {"batch_size": 3},
     {"provider": "fal", "width": 2048, "height": 2048}, {"aspect_ratio": "9:21", "megapixels": "0.5"}],
)
def test_price_badge_matches_the_estimate(widgets) -> None:
    expected = estimate_cost(settings(**{**widgets, "megapixels": float(widgets.get("megapixels", 1))}))
    assert badge(price_badge_expression(edit_image=False, references_socket="references"), **widgets) == {
        "type": "text", "text": f"${expected.usd:.3f}"}


def test_price_badge_gives_a_range_for_references_and_text_for_unknown_prices() -> None:
    generate = price_badge_expression(edit_image=False, references_socket="references")
    assert badge(generate, connected=True) == {"type": "text", "text": f"~$0.100-${0.05 + 8 * 4 * 0.05:.3f}"}
    assert badge(generate, provider="cometapi") == {"type": "text", "text": "price unknown"}
    assert badge(generate, provider="local") == {"type": "text", "text": "free (local)"}
    edit = badge(price_badge_expression(edit_image=True, references_socket="references"))
    assert edit == {"type": "text", "text": "~$0.100-$0.250"}
