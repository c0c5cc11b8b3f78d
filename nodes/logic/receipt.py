"""A run's report as the user reads it on the node: a receipt (what it cost, what it made, the
seed, the provider's own figure, the task, the notes). How prices are computed and where the
figures come from stay in the README and the log."""

from __future__ import annotations

from ..engine.local.backend import LOCAL
from ..engine.pricing import CostEstimate, UnknownPrice, price_for
from ..engine.runner import GenerationResult

CACHED = "$0 · from the result cache: no request was sent (it cost {first} the first time)"
UNKNOWN = "price unknown: see {see}"


def cost_text(estimate: CostEstimate) -> str:
    """`$0.050`, `free`, or where to see an unknown price."""
    if estimate.usd is None:
        price = price_for(estimate.provider)
        return UNKNOWN.format(see=price.see) if isinstance(price, UnknownPrice) else "price unknown"
    return "free" if estimate.usd == 0 else f"${estimate.usd:.3f}"


def receipt(result: GenerationResult) -> str:
    """One image's receipt, a few short lines."""
    height, width = result.pixels.shape[:2]
    seed = result.seed if result.seed is not None else "random"
    cost = CACHED.format(first=cost_text(result.estimate)) if result.from_cache else cost_text(result.estimate)
    lines = [f"{cost} · {width}x{height} · seed {seed}"]
    if result.reported_cost is not None and not result.from_cache:
        lines.append(f"{result.provider} reported {result.reported_cost:g} {result.estimate.unit}")
    if result.provider == LOCAL:
        lines.append(f"ran locally: {result.task_id.removeprefix(LOCAL + ':')}")
    elif result.task_id:
        lines.append(f"{result.provider} task {result.task_id}")
    lines.extend(result.notes)
    return "\n".join(lines)
