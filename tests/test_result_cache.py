"""The same request twice costs once, also after a restart; nothing half-written is ever a hit."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.batch import generate_batch
from comfyui_flux2_flex.nodes.engine.durable import generate_cached
from comfyui_flux2_flex.nodes.engine.cli import main
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage
from comfyui_flux2_flex.nodes.engine.result_cache import ResultCache, cache_key
from comfyui_flux2_flex.nodes.engine.runner import prepare
from fakes.bfl_server import FakeBfl, TaskPlan

REFERENCE = InputImage(np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3))
REQUEST = FlexRequest(prompt="a fox", width=128, height=128, seed=5, images=(REFERENCE,))


def run(provider: BflProvider, cache: ResultCache, request: FlexRequest = REQUEST):
    return generate_cached(prepare(request, provider), provider, cache)


def test_a_repeat_request_is_answered_from_disk_with_no_request(fake_bfl: FakeBfl, bfl: BflProvider, tmp_path) -> None:
    first = run(bfl, ResultCache(tmp_path))
    requests_after_first = len(fake_bfl.all_requests())
    again = run(bfl, ResultCache(tmp_path))  # a new instance: as after a restart
    assert len(fake_bfl.all_requests()) == requests_after_first
    assert np.array_equal(again.pixels, first.pixels) and again.task_id == first.task_id
    assert again.from_cache and not first.from_cache
    assert "from the result cache: no request, no cost" in again.report()


@pytest.mark.parametrize(
    "change",
    [{"prompt": "a fox."}, {"seed": 6}, {"steps": 49}, {"guidance": 5.1}, {"safety_tolerance": 3},
     {"output_format": "jpeg"}, {"prompt_upsampling": False}, {"width": 144}],
)
def test_any_changed_setting_is_a_miss(change) -> None:
    assert cache_key("bfl", replace(REQUEST, **change)) != cache_key("bfl", REQUEST)


def test_one_changed_pixel_or_another_provider_is_a_miss() -> None:
    pixels = REFERENCE.pixels.copy()
    pixels[10, 10, 1] ^= 1
    assert cache_key("bfl", replace(REQUEST, images=(InputImage(pixels),))) != cache_key("bfl", REQUEST)
    assert cache_key("fal", REQUEST) != cache_key("bfl", REQUEST)


def test_the_key_reads_the_pixels_not_their_memory_layout_and_keeps_their_order() -> None:
    fortran = InputImage(np.asfortranarray(REFERENCE.pixels))
    assert cache_key("bfl", replace(REQUEST, images=(fortran,))) == cache_key("bfl", REQUEST)
    other = InputImage(REFERENCE.pixels[::-1].copy())
    assert (cache_key("bfl", replace(REQUEST, images=(REFERENCE, other)))
            != cache_key("bfl", replace(REQUEST, images=(other, REFERENCE))))


def test_names_are_the_ones_earlier_versions_gave_so_an_upgrade_never_pays_again() -> None:
    """Values from the pack before uploads and hashing were reworked: a cache entry or an unfinished
    paid task recorded then is still found by a rerun now."""
    assert cache_key("bfl", REQUEST) == "f0d0fa1e54061ebc50354f13a33f4c41d7266b2e6fa94d8fe1501509c2e53798"
    assert (cache_key("bfl", replace(REQUEST, images=()))
            == "e4ecf9cf80a1d084b67540f8209ec7a08ed2cc1eca4608aad070b3c8f6d4058a")


def test_random_seeds_are_never_cached(fake_bfl: FakeBfl, bfl: BflProvider, tmp_path) -> None:
    assert cache_key("bfl", replace(REQUEST, seed=None)) is None
    run(bfl, ResultCache(tmp_path / "cache"), replace(REQUEST, seed=None))
    assert not (tmp_path / "cache").exists()


def test_moderated_and_failed_runs_store_nothing(fake_bfl: FakeBfl, bfl: BflProvider, tmp_path) -> None:
    fake_bfl.plans.extend([TaskPlan(statuses=["Content Moderated"]), TaskPlan(statuses=["Error"])])
    for _ in range(2):
        with pytest.raises(errors.FluxFlexError):
            run(bfl, ResultCache(tmp_path))
    assert not list(tmp_path.glob("*.json"))


def test_least_recently_used_entries_go_first_when_over_the_cap(fake_bfl: FakeBfl, bfl: BflProvider, tmp_path) -> None:
    cache = ResultCache(tmp_path)
    results = {seed: run(bfl, cache, replace(REQUEST, seed=seed)) for seed in (1, 2, 3)}
    keys = {seed: cache_key("bfl", replace(REQUEST, seed=seed)) for seed in (1, 2, 3, 4)}
    for seed, last_used in ((2, 1_000), (3, 2_000), (1, 3_000)):  # seed 2 least recently used
        os.utime(tmp_path / f"{keys[seed]}.json", (last_used, last_used))
    largest = max(sum(p.stat().st_size for p in tmp_path.glob(f"{keys[s]}.*")) for s in (1, 2, 3))
    small = ResultCache(tmp_path, max_bytes=int(largest * 2.5))
    small.put(keys[4], replace(results[1], seed=4))
    assert small.get(keys[2]) is None and small.get(keys[3]) is None
    assert small.get(keys[1]) is not None and small.get(keys[4]) is not None


def test_a_crash_mid_write_never_gives_a_corrupt_hit(fake_bfl: FakeBfl, bfl: BflProvider, tmp_path) -> None:
    cache = ResultCache(tmp_path)
    run(bfl, cache)
    key = cache_key("bfl", REQUEST)
    png = tmp_path / f"{key}.png"
    png.write_bytes(png.read_bytes()[:100])  # as if the process died while replacing it
    (tmp_path / ".tmp-leftover.png").write_bytes(b"partial")
    assert cache.get(key) is None
    assert not png.exists(), "the damaged entry was removed"
    (tmp_path / f"{key}.json").write_text("{not json")
    assert cache.get(key) is None


def test_a_batch_pays_only_for_the_images_not_cached_yet(fake_bfl: FakeBfl, bfl: BflProvider, tmp_path) -> None:
    cache = ResultCache(tmp_path)
    run(bfl, cache, replace(REQUEST, seed=8))
    prepared = [prepare(replace(REQUEST, seed=seed), bfl) for seed in (7, 8, 9)]
    results = generate_batch(prepared, bfl, cache=cache)
    assert [r.from_cache for r in results] == [False, True, False]
    assert sorted(r.json()["seed"] for r in fake_bfl.submits) == [7, 8, 9]


def test_the_cli_cache_dir_answers_a_repeat_for_free(fake_bfl: FakeBfl, monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("BFL_API_KEY", fake_bfl.api_key)
    monkeypatch.setenv("FLUX_FLEX_BFL_URL", fake_bfl.api_url)
    args = ["generate", "--prompt", "fox", "--seed", "3", "--width", "128", "--height", "128",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "o.png")]
    assert main(args) == 0 and main(args) == 0
    assert len(fake_bfl.submits) == 1
    assert "no request, no cost" in capsys.readouterr().out
