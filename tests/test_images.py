"""Whatever IMAGE a user wires in becomes clean pixels; whatever comes back becomes an IMAGE."""

from __future__ import annotations

import base64
import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_flux2_flex.nodes.engine.errors import ImageDecodeError, InvalidRequestError, ResultTooLargeError
from comfyui_flux2_flex.nodes.engine.images import decode_image, downscale_to_max_pixels, upload_base64
from comfyui_flux2_flex.nodes.engine.request import InputImage
from comfyui_flux2_flex.nodes.logic.tensors import arrays_to_tensor, tensor_to_arrays


def random_batch(batch: int = 2, height: int = 48, width: int = 64, channels: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, height, width, channels), generator=generator).float() / 255.0


def uploaded(pixels: np.ndarray, image_format: str) -> bytes:
    """The file an upload of `pixels` carries (its base64 decoded)."""
    return base64.b64decode(upload_base64(InputImage(pixels), image_format))


def test_png_round_trip_is_exact() -> None:
    tensor = random_batch()
    frames = tensor_to_arrays(tensor)
    decoded = [decode_image(uploaded(frame, "png")) for frame in frames]
    assert torch.equal(arrays_to_tensor(decoded), tensor)


@pytest.mark.parametrize(("image_format", "magic"), [("jpeg", b"\xff\xd8\xff"), ("webp", b"RIFF")])
def test_lossy_uploads_stay_close(image_format: str, magic: bytes) -> None:
    frame = np.full((64, 64, 3), 120, np.uint8)
    data = uploaded(frame, image_format)
    assert data.startswith(magic)
    assert np.abs(decode_image(data).astype(int) - 120).max() <= 3


def test_an_unknown_upload_format_is_refused_by_name() -> None:
    with pytest.raises(InvalidRequestError, match="upload_format.*png, jpeg, webp"):
        uploaded(np.zeros((16, 16, 3), np.uint8), "gif")


def test_single_frame_grayscale_half_and_non_contiguous_inputs() -> None:
    base = random_batch(1, 32, 40)
    single = base[0]
    assert np.array_equal(tensor_to_arrays(single)[0], tensor_to_arrays(base)[0])
    grey = base[..., :1]
    grey_frame = tensor_to_arrays(grey)[0]
    assert grey_frame.shape == (32, 40, 3) and np.array_equal(grey_frame[..., 0], grey_frame[..., 2])
    half = tensor_to_arrays(base.half())[0]
    assert np.abs(half.astype(int) - tensor_to_arrays(base)[0]).max() <= 1
    transposed = base.transpose(1, 2)  # a [1, 40, 32, 3] view, not contiguous
    assert not transposed.is_contiguous()
    assert tensor_to_arrays(transposed)[0].shape == (40, 32, 3)


def test_a_small_overshoot_is_clamped() -> None:
    tensor = torch.tensor([[[[-0.5, 1.7, 0.5]]]])
    assert tensor_to_arrays(tensor)[0].tolist() == [[[0, 255, 128]]]


@pytest.mark.parametrize(
    ("tensor", "words"),
    [
        (torch.tensor([[[[0.2, float("nan"), 0.5]]]]), "NaN or infinite values"),
        (torch.tensor([[[[0.2, float("inf"), 0.5]]]]), "NaN or infinite values"),
        (torch.full((1, 2, 2, 3), 200, dtype=torch.uint8), "torch.uint8 tensor"),
        (torch.full((1, 2, 2, 3), 200.0), "values from 200 to 200"),
    ],
)
def test_values_that_would_turn_black_or_white_are_refused_naming_the_input(tensor, words) -> None:
    with pytest.raises(InvalidRequestError, match=words) as refused:
        tensor_to_arrays(tensor, name="image_2")
    assert refused.value.field == "image_2"


def test_rgba_is_composited_over_white() -> None:
    tensor = torch.zeros(1, 2, 2, 4)
    tensor[..., 0] = 1.0  # red
    tensor[0, 0, 0, 3] = 1.0  # one opaque pixel, the rest transparent
    frame = tensor_to_arrays(tensor)[0]
    assert frame[0, 0].tolist() == [255, 0, 0] and frame[1, 1].tolist() == [255, 255, 255]


@pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8, 5), (0, 8, 8, 3)])
def test_malformed_tensors_are_refused_by_name(shape) -> None:
    with pytest.raises(InvalidRequestError, match="reference"):
        tensor_to_arrays(torch.zeros(shape), name="reference")


def test_batch_of_different_sizes_is_refused_clearly() -> None:
    with pytest.raises(InvalidRequestError, match="one size"):
        arrays_to_tensor([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 16, 3), np.uint8)])


def test_downscale_keeps_aspect_and_reports_it() -> None:
    frame = np.zeros((1000, 3000, 3), np.uint8)
    result = downscale_to_max_pixels(frame, 300_000, label="reference 2")
    height, width = result.pixels.shape[:2]
    assert width * height <= 300_000 and abs(width / height - 3) < 0.01
    assert result.note.startswith("reference 2 downscaled from 3000x1000")
    assert downscale_to_max_pixels(frame, 4_000_000, label="x").note is None


def test_decoding_sniffs_the_bytes_not_the_name() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (10, 6), (0, 128, 255)).save(buffer, "WEBP", lossless=True)
    assert decode_image(buffer.getvalue())[0, 0].tolist() == [0, 128, 255]


def test_exif_orientation_is_applied() -> None:
    picture = Image.new("RGB", (30, 10), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", exif=exif)
    assert decode_image(buffer.getvalue()).shape == (30, 10, 3)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_decoding_makes_one_full_size_image_and_one_array(image_format: str) -> None:
    # A 4 MP reference decoded in a process that holds 8 of them: every extra full-size copy alive
    # at once raises the peak. Pillow counts the images it makes; tracemalloc the bytes numpy gets.
    pixels = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format)
    data = buffer.getvalue()
    made = Image.core.get_stats()["new_count"]
    tracemalloc.start()
    decoded = decode_image(data)
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert decoded.shape == pixels.shape
    assert Image.core.get_stats()["new_count"] - made == 1, "no copy in Pillow (orientation, conversion)"
    assert python_peak <= 2.1 * pixels.nbytes, "the array's bytes, and Pillow's pieces of them while joined"


def test_transparent_png_is_composited_over_white() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(buffer, "PNG")
    assert decode_image(buffer.getvalue())[0, 0].tolist() == [255, 255, 255]


def test_sixteen_bit_png_keeps_its_brightness() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(buffer, "PNG")
    assert decode_image(buffer.getvalue())[0, 0].tolist() == [255, 255, 255]


def test_an_error_page_is_not_an_image() -> None:
    with pytest.raises(ImageDecodeError, match="not an image"):
        decode_image(b"<html>502 Bad Gateway</html>")


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = _png_header_only(100_000, 100_000)
    with pytest.raises(ResultTooLargeError, match="too large|safety limit"):
        decode_image(bomb)


def test_a_result_over_the_pixel_limit_is_refused() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300)).save(buffer, "PNG")
    with pytest.raises(ResultTooLargeError, match="safety limit"):
        decode_image(buffer.getvalue(), max_pixels=50_000)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size: what a decompression bomb looks like to a decoder."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
