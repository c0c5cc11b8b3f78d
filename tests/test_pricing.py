"""The price of a request, before it is sent, matches BFL's published worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from comfyui_flux2_flex.nodes.engine.errors import InvalidRequestError
from comfyui_flux2_flex.nodes.engine.pricing import billable_megapixels, estimate, price_for
from comfyui_flux2_flex.nodes.engine.request import FlexRequest, InputImage


def reference(width: int, height: int) -> InputImage:
    return InputImage(np.zeros((height, width, 3), np.uint8))


@pytest.mark.parametrize(
    ("width", "height", "references", "credits"),
    [
        (1024, 1024, [], 5),  # BFL: 1024x1024 text to image costs 5 credits
        (1920, 1072, [], 10),  # 1.96 MP rounds up to 2 MP
        (1024, 1024, [(1024, 1024)], 10),  # one 1 MP reference adds 5
        (64, 64, [], 5),  # at least one megapixel
        (2048, 2048, [(512, 512), (2048, 2048)], 20 + 5 + 20),  # each input rounded up on its own
    ],
)
def test_bfl_worked_examples(width, height, references, credits) -> None:
    request = FlexRequest(prompt="p", width=width, height=height, images=tuple(reference(*r) for r in references))
    price = estimate(request, "bfl")
    assert price.credits == credits
    assert price.usd == pytest.approx(credits / 100)
    assert len(price.breakdown) == 2 + len(references)


def test_breakdown_explains_each_part_and_its_source() -> None:
    price = estimate(FlexRequest(prompt="p", width=1920, height=1072, images=(reference(1024, 1024),)), "bfl")
    text = price.as_text()
    assert "bfl: $0.150 (15 credits)" in text
    assert "output 1920x1072 = 1.96 MP, billed as 2 MP: 10 credits" in text
    assert "input 1: 1024x1024, billed as 1 MP: 5 credits" in text
    assert "source: BFL pricing" in text


def test_a_batch_costs_count_times_one() -> None:
    assert estimate(FlexRequest(prompt="p"), "bfl", count=4).credits == 20


def test_billable_megapixels_uses_exact_integer_rounding() -> None:
    assert billable_megapixels(1024, 1024) == 1
    assert billable_megapixels(1024, 1025) == 2
    assert billable_megapixels(1, 1) == 1


def test_a_provider_without_a_pricing_entry_gets_the_packs_error() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        price_for("no-such-provider")
    assert (caught.value.field, caught.value.value, caught.value.provider) == ("provider", "no-such-provider",
                                                                              "no-such-provider")
    assert "bfl" in caught.value.allowed
