"""ComfyUI's price badge, generated from the engine's pricing table so a price is written once.

The badge is a JSONata expression the frontend evaluates as widgets change. It sees widget
values and whether sockets are connected, not the pixels on them, so reference images are
priced as a range: at least 1 MP each, at most the provider's cap. The exact figure is what
CostEstimate and each run's report give. Prices are shown as dollar text: the frontend renders a
"usd" badge in comfy.org credits, which these nodes do not bill in.
"""

from __future__ import annotations

import json

from .engine.pricing import PRICES, FreePrice, PerMegapixelPrice, UnknownPrice, billable_megapixels
from .engine.providers.base import ProviderLimits
from .engine.request import ASPECT_PRESETS, MEGAPIXEL, MEGAPIXEL_CHOICES, preset_size

_LIMITS = ProviderLimits()


def _rate_table() -> dict[str, dict[str, float] | str]:
    table: dict[str, dict[str, float] | str] = {}
    for name, price in PRICES.items():
        if isinstance(price, PerMegapixelPrice):
            usd = price.usd_per_credit
            table[name] = {"first": price.first_output_mp * usd, "extra": price.extra_output_mp * usd,
                           "input": price.input_mp * usd}
        elif isinstance(price, FreePrice):
            table[name] = "free (local)"
        elif isinstance(price, UnknownPrice):
            table[name] = "price unknown"
    return table


def _preset_megapixels() -> dict[str, dict[str, int]]:
    """Billable output megapixels of every aspect/megapixel preset, precomputed in Python."""
    return {
        aspect: {mp: billable_megapixels(*preset_size(aspect, float(mp)).size) for mp in MEGAPIXEL_CHOICES}
        for aspect in ASPECT_PRESETS
    }


def price_badge_expression(*, edit_image: bool, references_socket: str | None) -> str:
    """The JSONata expression for Generate (edit_image False), Edit (True) or CostEstimate."""
    max_input_mp = _LIMITS.max_input_pixels // MEGAPIXEL
    refs = (f'($lookup(inputs, "{references_socket}").connected ? 1 : 0)' if references_socket else "0")
    return f"""
(
  $rates := {json.dumps(_rate_table())};
  $presets := {json.dumps(_preset_megapixels())};
  $rate := $lookup($rates, widgets.provider);
  $w := widgets.width; $h := widgets.height;
  $custom := widgets.aspect_ratio = "custom";
  $outMP := $custom ? $max([1, $ceil(($w * $h) / {MEGAPIXEL})])
                    : $lookup($lookup($presets, widgets.aspect_ratio), $string(widgets.megapixels));
  $n := $exists(widgets.batch_size) ? widgets.batch_size : 1;
  $minInputs := {1 if edit_image else 0} + ({refs});
  $maxInputs := {refs} = 1 ? {_LIMITS.max_images} : {1 if edit_image else 0};
  $type($rate) = "string"
    ? {{"type": "text", "text": $rate}}
    : (
      $out := $rate.first + $rate.extra * ($outMP - 1);
      $low := ($out + $rate.input * $minInputs) * $n;
      $high := ($out + $rate.input * {max_input_mp} * $maxInputs) * $n;
      $usd := function($v) {{ "$" & $formatNumber($v, "0.000") }};
      {{"type": "text", "text": $maxInputs > 0 ? "~" & $usd($low) & "-" & $usd($high) : $usd($low)}}
    )
)
""".strip()


BADGE_WIDGETS = ("provider", "aspect_ratio", "megapixels", "width", "height", "batch_size")
