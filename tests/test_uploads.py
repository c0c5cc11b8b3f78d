"""Input images on the way up: encoded once per run, in parallel, in the format the user chose.

Every story runs over real sockets against the loopback BFL; the encoder is Pillow's own, only
wrapped to count its calls (or, for the parallel story, to make two encodes meet).
"""

from __future__ import annotations

import base64
import io
import os
import threading
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine import images
from comfyui_flux2_flex.nodes.engine.batch import generate_batch
from comfyui_flux2_flex.nodes.engine.errors import InvalidRequestError
from comfyui_flux2_flex.nodes.engine.fingerprint import request_fingerprint
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage, seeded_requests
from comfyui_flux2_flex.nodes.engine.runner import prepare
from fakes.bfl_server import FakeBfl
from fakes.loopback import Response
from provider_runs import FAST, run

BARRIER_TIMEOUT = 10.0  # only reached when the encodes do not overlap, which fails the test
RNG = np.random.default_rng(3)


def photo(width: int = 96, height: int = 64) -> InputImage:
    """Noisy pixels: a lossy upload cannot reproduce them exactly."""
    return InputImage(RNG.integers(0, 256, (height, width, 3), dtype=np.uint8))


def count_encodes(monkeypatch: pytest.MonkeyPatch, on_encode=None) -> Counter:
    """Wrap the pack's one image encoder: count each (image, format) it is asked for."""
    calls: Counter = Counter()
    encode = images._encoded

    def counting(image: InputImage, image_format: str):
        calls[(id(image), image_format)] += 1
        if on_encode is not None:
            on_encode()
        return encode(image, image_format)

    monkeypatch.setattr(images, "_encoded", counting)
    return calls


def uploads(body: dict) -> list[Image.Image]:
    """The images one BFL submit carried, in slot order."""
    slots = ["input_image"] + [f"input_image_{index}" for index in range(2, 9)]
    return [Image.open(io.BytesIO(base64.b64decode(body[slot]))) for slot in slots if slot in body]


def test_a_batch_of_four_sharing_two_references_encodes_each_once(
    fake_bfl: FakeBfl, bfl: BflProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_encodes(monkeypatch)
    references = (photo(), photo(64, 48))
    request = FlexRequest(prompt="a poster", width=128, height=128, seed=5, images=references)
    generate_batch([prepare(item, bfl) for item in seeded_requests(request, 4)], bfl, settings=FAST)
    assert len(fake_bfl.submits) == 4
    assert sorted(calls.values()) == [1, 1]
    for submit in fake_bfl.submits:  # every item still carried both, exactly
        sent = uploads(submit.json())
        assert [np.array_equal(np.asarray(picture), ref.pixels) for picture, ref in zip(sent, references)] == [1, 1]


def test_a_submit_retried_after_a_busy_answer_sends_the_same_encoding(
    fake_bfl: FakeBfl, bfl: BflProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_encodes(monkeypatch)
    fake_bfl.submit_script.append(Response.json({"detail": "busy"}, 429, {"Retry-After": "0"}))
    run(bfl, FlexRequest(prompt="p", width=128, height=128, images=(photo(),)))
    first, second = fake_bfl.submits
    assert first.body == second.body
    assert list(calls.values()) == [1]


def test_the_images_of_one_request_are_encoded_at_the_same_time(
    fake_bfl: FakeBfl, bfl: BflProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    meeting = threading.Barrier(3, timeout=BARRIER_TIMEOUT)  # a serial encoder breaks it, failing the run
    calls = count_encodes(monkeypatch, on_encode=meeting.wait)
    run(bfl, FlexRequest(prompt="p", width=128, height=128, images=(photo(), photo(), photo())))
    assert sum(calls.values()) == 3 and len(fake_bfl.submits) == 1


def test_uploads_are_lossless_png_unless_jpeg_is_chosen(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    reference = photo()
    run(bfl, FlexRequest(prompt="p", width=128, height=128, images=(reference,)))
    run(bfl, FlexRequest(prompt="p", width=128, height=128, images=(reference,), upload_format="jpeg"))
    (png,), (jpeg,) = (uploads(submit.json()) for submit in fake_bfl.submits)
    assert png.format == "PNG" and np.array_equal(np.asarray(png), reference.pixels)
    assert jpeg.format == "JPEG" and jpeg.size == png.size
    assert int(fake_bfl.submits[1].headers["content-length"]) == len(fake_bfl.submits[1].body)


def test_a_format_the_provider_does_not_take_is_refused_before_anything_is_sent(
    fake_bfl: FakeBfl, bfl: BflProvider
) -> None:
    request = FlexRequest(prompt="p", width=128, height=128, images=(photo(),), upload_format="webp")
    with pytest.raises(InvalidRequestError, match=r"upload_format.*webp.*png or jpeg on BFL"):
        run(bfl, request)
    assert fake_bfl.submits == []
    run(bfl, FlexRequest(prompt="p", width=128, height=128, upload_format="webp"))  # nothing to upload: no refusal


def test_a_prompt_that_looks_like_a_placeholder_is_sent_as_typed(fake_bfl: FakeBfl, bfl: BflProvider) -> None:
    prompt = 'the sign reads "flux-flex-image-0123456789abcdef-0" and \\u00e9\u00e9'
    run(bfl, FlexRequest(prompt=prompt, width=128, height=128, images=(photo(),)))
    assert fake_bfl.submits[0].json()["prompt"] == prompt


def test_the_upload_format_names_a_different_result_only_when_lossy_images_are_sent() -> None:
    reference = photo()
    png = FlexRequest(prompt="p", seed=1, images=(reference,))
    text_only = FlexRequest(prompt="p", seed=1)
    assert request_fingerprint("bfl", png) != request_fingerprint("bfl", FlexRequest(
        prompt="p", seed=1, images=(reference,), upload_format="jpeg"))
    assert request_fingerprint("bfl", text_only) == request_fingerprint("bfl", FlexRequest(
        prompt="p", seed=1, upload_format="jpeg"))


def test_an_edit_image_over_the_cap_is_shrunk_and_encoded_once_for_the_whole_batch(
    fake_bfl: FakeBfl, bfl: BflProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_encodes(monkeypatch)
    shrinks: list[int] = []
    shrink = images.downscale_to_max_pixels
    monkeypatch.setattr(images, "downscale_to_max_pixels", lambda *args, **kwargs: shrinks.append(1) or shrink(
        *args, **kwargs))
    oversized = InputImage(np.zeros((2000, 2600, 3), np.uint8))  # 5.2 MP: over BFL's 4 MP per input
    request = FlexRequest(prompt="p", width=128, height=128, seed=1, images=(oversized,))
    prepared = [prepare(item, bfl) for item in seeded_requests(request, 3)]
    assert all("downscaled from 2600x2000" in item.notes[0] for item in prepared)
    generate_batch(prepared, bfl, settings=FAST)
    assert len(shrinks) == 1 and list(calls.values()) == [1] and len(fake_bfl.submits) == 3
