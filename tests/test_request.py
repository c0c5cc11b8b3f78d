"""A user's settings are checked before any money is spent, with the field and range named."""

from __future__ import annotations

import math

import numpy as np
import pytest

from comfyui_flux2_flex.nodes.engine.errors import InvalidRequestError
from comfyui_flux2_flex.nodes.engine.request import (
    GUIDANCE, MAX_OUTPUT_PIXELS, STEPS, FlexRequest, InputImage, fit_size, preset_size, validate_request,
)


def image(width: int = 64, height: int = 64) -> InputImage:
    return InputImage(np.zeros((height, width, 3), np.uint8))


def test_defaults_are_bfls_documented_ones() -> None:
    request = validate_request(FlexRequest(prompt="a cat"))
    assert (request.steps, request.guidance, request.safety_tolerance, request.prompt_upsampling) == (50, 5.0, 2, True)
    assert (STEPS.minimum, STEPS.maximum, GUIDANCE.minimum, GUIDANCE.maximum) == (1, 50, 1.5, 10.0)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"prompt": "   "}, "prompt", "non-empty"),
        ({"steps": 0}, "steps", "1 to 50"),
        ({"steps": 51}, "steps", "1 to 50"),
        ({"steps": 2.5}, "steps", "whole number"),
        ({"guidance": math.nan}, "guidance", "from 1.5 to 10"),
        ({"guidance": 1.4}, "guidance", "from 1.5 to 10"),
        ({"safety_tolerance": 6}, "safety_tolerance", "0 to 5"),
        ({"seed": -1}, "seed", "0 to 4294967295"),
        ({"output_format": "gif"}, "output_format", "png, jpeg, webp"),
        ({"width": 1000}, "width", "multiple of 16 (nearest: 992 or 1008)"),
        ({"height": 48}, "height", "64 to 4096"),
        ({"width": 2048, "height": 2064}, "width x height", "at most 4,194,304 px"),
        ({"width": None}, "width/height", "both or neither"),
        ({"width": None, "height": None}, "width/height", "required when no input image"),
        ({"images": (image(),) * 9}, "input images", "at most 8"),
    ],
)
def test_bad_values_name_the_field_the_value_and_the_range(changes, field, words) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate_request(FlexRequest(**{"prompt": "a cat", **changes}))
    assert caught.value.field == field
    assert field in str(caught.value) and words in str(caught.value)


def test_largest_allowed_output_is_exactly_4_megapixels() -> None:
    validate_request(FlexRequest(prompt="p", width=2048, height=2048))
    assert 2048 * 2048 == MAX_OUTPUT_PIXELS


def test_auto_size_follows_the_first_input_image() -> None:
    request = validate_request(FlexRequest(prompt="p", width=None, height=None, images=(image(1000, 600),)))
    assert request.output_size() == (1008, 608)


def test_fit_size_rounds_to_16_and_says_so() -> None:
    fitted = fit_size(1000, 600)
    assert fitted.size == (1008, 608)
    assert fitted.notes == ("size 1000x600 adjusted to 1008x608 (multiples of 16)",)
    assert fit_size(1024, 768).notes == ()


def test_fit_size_caps_at_4_megapixels_keeping_the_aspect() -> None:
    fitted = fit_size(6000, 4000)
    assert fitted.width * fitted.height <= MAX_OUTPUT_PIXELS
    assert fitted.width % 16 == 0 and fitted.height % 16 == 0
    assert abs(fitted.width / fitted.height - 1.5) < 0.02
    assert any("exceeds 4 MP" in note for note in fitted.notes)


@pytest.mark.parametrize("aspect", ["1:1", "16:9", "9:16", "21:9", "4:5"])
@pytest.mark.parametrize("megapixels", [0.5, 1.0, 2.0, 4.0])
def test_every_preset_resolves_to_a_valid_size(aspect: str, megapixels: float) -> None:
    fitted = preset_size(aspect, megapixels)
    validate_request(FlexRequest(prompt="p", width=fitted.width, height=fitted.height))
    assert 0.9 < fitted.width * fitted.height / (megapixels * 1024 * 1024) <= 1.0  # never billed a megapixel more


def test_settings_describe_images_without_their_pixels() -> None:
    settings = FlexRequest(prompt="p", images=(image(80, 64),)).settings()
    assert settings["input_images"] == ["80x64"]
