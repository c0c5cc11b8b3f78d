"""What the nodes do, told as a user's stories, without ComfyUI: the node classes only adapt these."""

from __future__ import annotations

import base64
import stat

import pytest
import torch

from comfyui_flux2_flex.nodes.engine.errors import InvalidRequestError, MissingApiKeyError
from comfyui_flux2_flex.nodes.engine.keys import resolve_api_key
from comfyui_flux2_flex.nodes.engine.settings import configure
from comfyui_flux2_flex.nodes.engine.runner import RunHooks
from comfyui_flux2_flex.nodes.logic.key_store import KeyStore
from comfyui_flux2_flex.nodes.logic.node_runs import NodeSettings, check_settings, estimate_cost, run_settings
from comfyui_flux2_flex.nodes.logic.price_preview import SocketImages, preview_for_browser, preview_price
from comfyui_flux2_flex.nodes.logic.references import collect_references
from fakes.bfl_server import FakeBfl, TaskPlan


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


def test_a_seed_beyond_what_providers_take_is_refused_before_any_request(bfl_env: FakeBfl) -> None:
    """Issue 22, finding 9: the widget takes ComfyUI's 2^64-1 seeds for local runs; a remote run keeps to
    the providers' range and says so before paying."""
    with pytest.raises(InvalidRequestError, match="seed = 4294967296 is not allowed: from 0 to 4294967295"):
        run_settings(settings(seed=2**32 - 2, batch_size=3), RunHooks())
    assert bfl_env.all_requests() == []


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
        ({"seed": 2**64 - 1, "batch_size": 2}, "at most 18446744073709551614 with batch_size 2"),
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
    configure(stored_keys_file=path)
    try:
        assert resolve_api_key("fal", "FAL_KEY", environ={}).reveal() == "fal-secret-1"
        assert resolve_api_key("fal", "FAL_KEY", environ={"FAL_KEY": "env-wins"}).reveal() == "env-wins"
    finally:
        configure()
    store.save("fal", "")
    assert store.names()["fal"] == []
    with pytest.raises(InvalidRequestError, match="provider"):
        store.save("other", "x")
    with pytest.raises(InvalidRequestError, match="single token") as caught:
        store.save("bfl", "two words")
    assert "two words" not in str(caught.value)


def test_the_price_before_a_run_is_the_engines_estimate() -> None:
    for changes in ({}, {"width": 1920, "height": 1072}, {"aspect_ratio": "16:9", "megapixels": 2.0},
                    {"batch_size": 3}, {"provider": "fal", "width": 2048, "height": 2048}):
        expected = estimate_cost(settings(**changes))
        preview = preview_price(settings(**changes))
        width, height = settings(**changes).output_size()
        assert preview.text == f"${expected.usd:.3f} · {width}x{height}", "the price names the size it prices"
        assert preview.usd_low == preview.usd_high == expected.usd


def test_the_price_line_names_the_size_the_preset_makes_not_the_hidden_width() -> None:
    preview = preview_price(settings(aspect_ratio="2:3", megapixels=1.0, width=1024, height=1024))
    assert preview.text == "$0.050 · 832x1248"


def test_edit_and_reference_sizes_known_from_their_files_give_the_exact_price() -> None:
    refs = collect_references([("image_1", image_batch(1, 2100, 2100)), ("image_2", image_batch(1, 384, 384))])
    exact = estimate_cost(settings(batch_size=2), edit_image=image_batch(1, 600, 1000), references=refs)
    preview = preview_price(settings(batch_size=2), edit_image=SocketImages(((1000, 600),)),
                            references=SocketImages(((2100, 2100), (384, 384))))
    assert preview.text == f"${exact.usd:.3f} · 1008x608" and "input 2: 2048x2048" in preview.detail, \
        "the input's size rounded to 16; references downscaled as sent"
    fixed = preview_price(settings(width=2048, height=2048), edit_image=SocketImages(((1000, 600),)),
                          match_input_size=False)
    assert fixed.text == "$0.250 · 2048x2048", "match_input_size off: the widgets' size is billed, 4 MP out and 1 MP in"


def test_images_known_only_when_the_graph_runs_give_a_range() -> None:
    size = "{}x{}".format(*settings().output_size())
    assert preview_price(settings(), references=SocketImages(unknown=1)).text == \
        f"~$0.100-${0.05 + 8 * 4 * 0.05:.3f} · {size}"
    assert preview_price(settings(), edit_image=SocketImages(unknown=1)).text == "~$0.100-$0.400 · the input's size"
    partly = preview_price(settings(), references=SocketImages(((64, 64),), unknown=1))
    assert partly.text == f"~$0.150-${0.10 + 7 * 0.20:.3f} · {size}"


def test_the_price_preview_says_what_is_wrong_or_unknown() -> None:
    size = "{}x{}".format(*settings().output_size())
    assert preview_price(settings(provider="cometapi")).text == f"price unknown: see your CometAPI dashboard · {size}"
    bad = preview_price(settings(width=1000))
    assert bad.problem and "width = 1000 is not allowed" in bad.text
    assert preview_price(settings(provider="bfl"), local=True).text == f"free (local run) · {size}"
    no_key = preview_price(settings(provider="bfl-eu"), has_key=False)
    assert no_key.problem and no_key.text == f"$0.050 · {size} · no bfl key: Settings > FLUX.2 Flex", \
        "bfl-eu pays with the bfl key"
    empty = preview_price(settings(prompt=" "))
    assert empty.problem and empty.text == f"$0.050 · {size} · needs a prompt", "the price, then what is missing"


def test_the_browser_asks_with_widget_values_and_file_names() -> None:
    sizes = {"street.png": (768, 512)}
    answer = preview_for_browser(
        {"widgets": {"provider": "bfl", "prompt": "x", "megapixels": "1", "match_input_size": True, "batch_size": 2},
         "image": {"files": ["street.png"], "unknown": 0}, "references": None, "local": False}, sizes.get, has_key)
    assert answer["text"] == "$0.200 · 768x512" and not answer["problem"]
    unreadable = preview_for_browser({"widgets": {"prompt": "x"}, "image": {"files": ["gone.png"]}}, sizes.get,
                                     has_key)
    assert unreadable["text"].startswith("~"), "a file whose size cannot be read counts as unknown"
    with pytest.raises(ValueError):
        preview_for_browser({"widgets": "nope"}, sizes.get, has_key)


def has_key(provider: str, name: str) -> bool:
    return True


def test_the_browser_hears_of_a_missing_key_and_image_but_cost_estimate_needs_no_key() -> None:
    asked = []

    def no_key(provider: str, name: str) -> bool:
        asked.append((provider, name))
        return False

    widgets = {"provider": "bfl", "prompt": "x", "key_name": "client"}
    generate = preview_for_browser({"node": "FluxFlexGenerate", "widgets": widgets}, {}.get, no_key)
    assert generate["problem"] and generate["text"].endswith("no bfl key: Settings > FLUX.2 Flex")
    assert asked == [("bfl", "client")], "the named key is the one looked for"
    estimate = preview_for_browser({"node": "FluxFlexCostEstimate", "widgets": widgets}, {}.get, no_key)
    assert not estimate["problem"] and estimate["text"].startswith("$0.050")
    edit = preview_for_browser({"node": "FluxFlexEdit", "widgets": widgets, "image": None}, {}.get, has_key)
    assert edit["problem"] and edit["text"] == "needs an image"


def test_an_edit_sends_its_images_in_the_chosen_upload_format(bfl_env: FakeBfl) -> None:
    frame = image_batch(1, 64, 80)
    run_settings(settings(), RunHooks(), edit_image=frame)
    run_settings(settings(upload_format="jpeg"), RunHooks(), edit_image=frame)
    png, jpeg = (base64.b64decode(r.json()["input_image"]) for r in bfl_env.submits)
    assert png.startswith(b"\x89PNG") and jpeg.startswith(b"\xff\xd8\xff")


def test_the_price_preview_refuses_an_upload_format_only_where_images_are_wired() -> None:
    assert not preview_price(settings(provider="fal", upload_format="jpeg")).problem, "text to image uploads nothing"
    refused = preview_price(settings(provider="fal", upload_format="jpeg"), references=SocketImages(((64, 64),)))
    assert refused.problem and "upload_format" in refused.detail and "png on fal" in refused.detail
    answer = preview_for_browser({"widgets": {"provider": "replicate", "prompt": "x", "upload_format": "webp"},
                                  "image": {"files": ["street.png"]}}, {"street.png": (768, 512)}.get, has_key)
    assert not answer["problem"]


def test_a_native_local_edit_prices_free_and_names_the_templates_size() -> None:
    """Issue 22, finding 7: on the Local Model (ComfyUI) path the output follows the edit image scaled to 1 MP."""
    answer = preview_for_browser({"widgets": {"provider": "bfl", "prompt": "x", "match_input_size": True},
                                  "image": {"files": ["street.png"]}, "local": True,
                                  "local_node": "FluxFlexNativeModel"}, lambda name: (768, 512), lambda *key: True)
    assert answer["text"] == "free (local run) · 1248x832" and "scaled to about 1 MP" in answer["detail"]
    diffusers = preview_for_browser({"widgets": {"provider": "bfl", "prompt": "x"}, "image": {"files": ["s.png"]},
                                     "local": True, "local_node": "FluxFlexLocalModel"}, lambda name: (768, 512),
                                    lambda *key: True)
    assert diffusers["text"] == "free (local run) · 768x512", "the diffusers path keeps the input's size"
