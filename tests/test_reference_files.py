"""Reference images the command line reads from files: decoded only while they are used, sent and
named exactly as the same pixels held in memory are, and refused before anything is paid when
they are damaged or change on disk."""

from __future__ import annotations

import base64
import io
import os
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfyui_flux2_flex.nodes.engine import image_files
from comfyui_flux2_flex.nodes.engine.cli import load_image_file, main
from comfyui_flux2_flex.nodes.engine.errors import FluxFlexError
from comfyui_flux2_flex.nodes.engine.fingerprint import request_fingerprint
from comfyui_flux2_flex.nodes.engine.providers.upload_body import build_upload_body
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage
from comfyui_flux2_flex.nodes.engine.spooled_upload import SpooledUpload

from fakes.bfl_server import FakeBfl

RNG = np.random.default_rng(11)
EXIF_ORIENTATION = 0x0112
REFERENCES = 4


def noise_file(path: Path, width: int = 96, height: int = 64) -> np.ndarray:
    """A PNG of noise at `path`; its pixels returned."""
    pixels = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


class DecodedCopies:
    """Every full-size decoding of a reference file, counted while it is alive (Pillow frees an
    image when its last reference goes, so no timing is involved)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.alive: list[weakref.ref] = []
        self.most_alive = 0
        decode = image_files.decode_picture

        def tracked(*args, **kwargs) -> Image.Image:
            picture = decode(*args, **kwargs)
            self.alive = [ref for ref in self.alive if ref() is not None] + [weakref.ref(picture)]
            self.most_alive = max(self.most_alive, len(self.alive))
            return picture

        monkeypatch.setattr(image_files, "decode_picture", tracked)

    def now(self) -> int:
        return sum(ref() is not None for ref in self.alive)


def test_reference_files_hold_no_decoded_copy_between_uses_and_one_per_encoder_while_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copies = DecodedCopies(monkeypatch)
    paths = [tmp_path / f"ref-{index}.png" for index in range(REFERENCES)]
    for path in paths:
        noise_file(path)
    images = tuple(load_image_file(path) for path in paths)
    assert (copies.most_alive, copies.now()) == (1, 0), "each file is decoded to check it, and let go"
    request = FlexRequest(prompt="fox", seed=1, images=images)

    request_fingerprint("bfl", request)
    assert (copies.most_alive, copies.now()) == (1, 0), "the fingerprint decodes one file at a time, in strips"

    body = build_upload_body(lambda encode: {"images": [encode(image) for image in images]}, "png", data_uri=False)
    encoders = min(REFERENCES, os.cpu_count() or 1)
    assert 1 <= copies.most_alive <= encoders and copies.now() == 0
    spooled = [piece for piece in body.pieces if isinstance(piece, SpooledUpload)]
    assert len(spooled) == REFERENCES, "each file's upload waits on disk, not in memory"
    assert sum(len(piece) for piece in body.pieces if isinstance(piece, bytes)) < 100


def test_a_reference_file_is_sent_and_named_as_the_same_pixels_in_memory(
        bfl_env: FakeBfl, tmp_path: Path) -> None:
    pixels = noise_file(tmp_path / "ref.png")
    from_file = FlexRequest(prompt="fox", seed=1, images=(load_image_file(tmp_path / "ref.png"),))
    in_memory = FlexRequest(prompt="fox", seed=1, images=(InputImage(pixels),))
    assert request_fingerprint("bfl", from_file) == request_fingerprint("bfl", in_memory)

    assert main(["generate", "--prompt", "fox", "--width", "256", "--height", "192", "--seed", "5",
                 "--reference", str(tmp_path / "ref.png"), "--out", str(tmp_path / "out.png")]) == 0
    [submit] = [request for request in bfl_env.all_requests() if request.method == "POST"]
    sent = Image.open(io.BytesIO(base64.b64decode(submit.json()["input_image"])))
    assert np.array_equal(np.asarray(sent), pixels)


def test_a_turned_photo_is_measured_and_sent_upright(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # shot with the camera turned: stored 96 wide, shown 64 wide
    Image.fromarray(RNG.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(tmp_path / "turned.jpg", exif=exif)
    image = load_image_file(tmp_path / "turned.jpg")
    assert (image.width, image.height) == (64, 96)
    assert image.picture().size == (64, 96) and image.pixels.shape == (96, 64, 3)


def test_a_damaged_reference_is_refused_before_anything_is_sent(
        bfl_env: FakeBfl, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    whole = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(whole, format="PNG")
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])  # a header that promises more
    assert main(["generate", "--prompt", "fox", "--seed", "5", "--reference", str(damaged),
                 "--out", str(tmp_path / "out.png")]) == 1
    assert f"Reference image {damaged} is damaged and cannot be decoded" in capsys.readouterr().err
    assert bfl_env.all_requests() == []


def test_a_reference_that_changes_on_disk_after_it_was_checked_is_not_read_again(tmp_path: Path) -> None:
    path = tmp_path / "ref.png"
    noise_file(path)
    image = load_image_file(path)
    noise_file(tmp_path / "other.png", 80, 60)
    os.replace(tmp_path / "other.png", path)  # an editor saving over it
    with pytest.raises(FluxFlexError, match=f"Reference image {path} changed on disk while the command was using it"):
        request_fingerprint("bfl", FlexRequest(prompt="fox", seed=1, images=(image,)))
