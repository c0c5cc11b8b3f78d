"""What a request costs before it is sent: the pricing table and the estimate.

Prices are data, each with its source, the date it was checked and how certain it is. The
CostEstimate node, the price badge (generated from this table as a JSONata expression), the CLI
and the tests all read from here, so a price is written once. Results carry the provider's own
reported cost beside the estimate, so a mismatch is visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .errors import InvalidRequestError
from .providers.gateway_profiles import BUILT_IN_PROFILES, GatewayProfile, read_user_gateways, user_gateways_path
from .request import MEGAPIXEL, FlexRequest


@dataclass(frozen=True)
class PerMegapixelPrice:
    """A price of the form first output MP + each further output MP + each input MP.

    Every image is rounded up to whole megapixels (1 MP = 1024*1024 px) with a minimum of one,
    which matches BFL's reported costs, fal's published rule and ComfyUI's own badges.
    """

    provider: str
    first_output_mp: float  # in credits
    extra_output_mp: float
    input_mp: float
    usd_per_credit: float
    credit_name: str
    source: str
    checked: str
    certainty: str


@dataclass(frozen=True)
class UnknownPrice:
    """A provider whose price is not published consistently: we say so instead of guessing."""

    provider: str
    reason: str
    source: str
    checked: str
    see: str  # where the user can see what a run cost, shown beside "price unknown"


@dataclass(frozen=True)
class FreePrice:
    """Runs on the user's own hardware."""

    provider: str
    reason: str


Price = PerMegapixelPrice | UnknownPrice | FreePrice
GATEWAYS_CHECKED = "2026-12-06"


def gateway_price(profile: GatewayProfile) -> Price:
    """A gateway's price from its profile: flat per call, BFL's per-megapixel rule, or unknown."""
    per_image, per_mp = profile.price_per_image_usd, profile.price_per_megapixel_usd
    if per_image is None and per_mp is None:
        return UnknownPrice(provider=profile.name, reason=profile.price_note, source=profile.source,
                            checked=GATEWAYS_CHECKED, see=f"your {profile.label} dashboard")
    cents = round(100 * (per_image if per_image is not None else per_mp), 4)
    per_megapixel = 0 if per_image is not None else cents
    return PerMegapixelPrice(
        provider=profile.name, first_output_mp=cents, extra_output_mp=per_megapixel, input_mp=per_megapixel,
        usd_per_credit=0.01, credit_name="cents", source=profile.source, checked=GATEWAYS_CHECKED,
        certainty=profile.price_note,
    )


_BFL_RATES = dict(
    first_output_mp=5, extra_output_mp=5, input_mp=5, usd_per_credit=0.01, credit_name="credits",
    source="BFL pricing (black-forest-labs/skills, cut from 6 to 5 credits on 2026-01-28); "
    "per-image rounding inferred from BFL's reported costs",
    checked="2026-11-23", certainty="rates confirmed; rounding of input megapixels inferred",
)

PRICES: dict[str, Price] = {
    **{name: PerMegapixelPrice(provider=name, **_BFL_RATES) for name in ("bfl", "bfl-eu", "bfl-us")},
    "apiframe": UnknownPrice(
        provider="apiframe",
        reason="Apiframe bills in its own credits and its flex page gives no price; the finished job reports "
        "its creditCost",
        source="docs-v2.apiframe.ai (Flux 2 Flex)", checked="2026-11-23", see="the run's report (Apiframe states it)",
    ),
    "replicate": UnknownPrice(
        provider="replicate",
        reason="Replicate bills flux-2-flex per megapixel in and out, but the only rate found ($0.06/MP, "
        "Lumenfall) is secondhand and predates BFL's cut to 5 cents on 2026-01-28; see your Replicate dashboard",
        source="Lumenfall's listing of black-forest-labs/flux-2-flex (secondary, probably stale)",
        checked="2026-11-23", see="your Replicate dashboard",
    ),
    "openrouter": PerMegapixelPrice(
        provider="openrouter", first_output_mp=6, extra_output_mp=6, input_mp=6, usd_per_credit=0.01,
        credit_name="cents", source="OpenRouter's model page for black-forest-labs/flux.2-flex", checked="2026-11-23",
        certainty="rate quoted by OpenRouter ($0.06 per MP in and out, before BFL's own cut to 5 cents); rounding "
        "to whole MP per image assumed as BFL's; each answer's usage.cost, shown in the report, is what was charged",
    ),
    "azure-foundry": UnknownPrice(
        provider="azure-foundry",
        reason="Microsoft publishes no per-megapixel figure for FLUX.2-flex that could be read (its Foundry pricing "
        "pages quote by region and agreement); LiteLLM's catalogue says $0.05 per MP; see Cost Management in the "
        "Azure portal",
        source="learn.microsoft.com (use-foundry-models-flux), azure.microsoft.com pricing", checked="2026-11-23",
        see="Cost Management in the Azure portal",
    ),
    **{name: gateway_price(profile) for name, profile in BUILT_IN_PROFILES.items()},
    "local": FreePrice(provider="local", reason="runs on your own hardware: no credits"),
    "fal": PerMegapixelPrice(
        provider="fal", first_output_mp=5, extra_output_mp=5, input_mp=5, usd_per_credit=0.01, credit_name="cents",
        source="fal.ai model page", checked="2026-11-23",
        certainty="confirmed: $0.05 per MP in and out, each image rounded up to whole MP",
    ),
}


def megapixels(width: int, height: int) -> float:
    return width * height / MEGAPIXEL


def billable_megapixels(width: int, height: int) -> int:
    """Whole megapixels, rounded up, at least one (integer arithmetic: no float edge cases)."""
    return max(1, -(-(width * height) // MEGAPIXEL))


@dataclass(frozen=True)
class CostEstimate:
    """The price of one request (or a batch of identical ones), with how it was computed."""

    provider: str
    credits: float | None
    usd: float | None
    breakdown: tuple[str, ...]
    note: str = ""
    unit: str = "credits"  # what the provider calls its credits (fal bills in cents)

    @property
    def known(self) -> bool:
        return self.usd is not None

    def summary(self) -> str:
        if self.usd is None:
            return f"{self.provider}: price unknown ({self.note})"
        if self.usd == 0:
            return f"{self.provider}: free ({self.note})"
        return f"{self.provider}: ${self.usd:.3f} ({self.credits:g} {self.unit})"

    def as_text(self) -> str:
        return "\n".join((self.summary(), *self.breakdown))


def estimate(request: FlexRequest, provider: str = "bfl", *, count: int = 1) -> CostEstimate:
    """Price `count` runs of `request` on `provider` from megapixels in and out."""
    price = price_for(provider)
    width, height = request.output_size()
    inputs = [(image.width, image.height) for image in request.images]
    return estimate_from_sizes(price, (width, height), inputs, count=count)


def price_for(provider: str) -> Price:
    """The pricing table's entry, or the pack's error naming the providers that have one."""
    if provider in PRICES:
        return PRICES[provider]
    added = read_user_gateways()
    if provider in added:
        return gateway_price(added[provider])
    raise InvalidRequestError("provider", provider, f"one of {', '.join((*PRICES, *added))} (those with a pricing "
                              f"entry), or a gateway added in {user_gateways_path()}", provider=provider)


def estimate_from_sizes(
    price: Price, output: tuple[int, int], inputs: Iterable[tuple[int, int]], *, count: int = 1
) -> CostEstimate:
    if isinstance(price, UnknownPrice):
        return CostEstimate(price.provider, None, None, (f"source: {price.source} ({price.checked})",), price.reason)
    if isinstance(price, FreePrice):
        return CostEstimate(price.provider, 0.0, 0.0, (), price.reason)
    out_mp = billable_megapixels(*output)
    in_mps = [billable_megapixels(w, h) for w, h in inputs]
    output_credits = price.first_output_mp + price.extra_output_mp * (out_mp - 1)
    input_credits = price.input_mp * sum(in_mps)
    per_image = output_credits + input_credits
    credits = per_image * count
    lines = [
        f"output {output[0]}x{output[1]} = {megapixels(*output):.2f} MP, billed as {out_mp} MP: "
        f"{output_credits:g} {price.credit_name}",
    ]
    for index, ((w, h), mp) in enumerate(zip(inputs, in_mps), start=1):
        lines.append(f"input {index}: {w}x{h}, billed as {mp} MP: {price.input_mp * mp:g} {price.credit_name}")
    if count > 1:
        lines.append(f"x {count} images")
    lines.append(f"1 {price.credit_name[:-1]} = ${price.usd_per_credit:g}; source: {price.source} ({price.checked})")
    return CostEstimate(
        price.provider, round(credits, 4), round(credits * price.usd_per_credit, 6), tuple(lines), unit=price.credit_name
    )
