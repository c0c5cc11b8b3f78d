"""A run's report as the user reads it on the node: a receipt (what it cost, what it made, the
seed, the provider's own figure, the task, the notes), in the user's language. How prices are
computed and where the figures come from stay in the README and the log."""

from __future__ import annotations

from ..engine.local.backend import LOCAL
from ..engine.pricing import CostEstimate, UnknownPrice, price_for
from ..engine.runner import GenerationResult
from .node_words import ENGLISH_WORDS, Words


def cost_text(estimate: CostEstimate, words: Words = ENGLISH_WORDS) -> str:
    """`$0.050`, `free`, or where to see an unknown price."""
    if estimate.usd is None:
        price = price_for(estimate.provider)
        return words("report.unknown", see=price.see) if isinstance(price, UnknownPrice) else \
            words("report.unknownPlain")
    return words("report.free") if estimate.usd == 0 else f"${estimate.usd:.3f}"


def receipt(result: GenerationResult, words: Words = ENGLISH_WORDS) -> str:
    """One image's receipt, a few short lines."""
    height, width = result.pixels.shape[:2]
    seed = result.seed if result.seed is not None else words("report.randomSeed")
    cost = cost_text(result.estimate, words)
    if result.from_cache:
        cost = words("report.fromCache", first=cost)
    lines = [words("report.line", cost=cost, size=f"{width}x{height}", seed=seed)]
    if result.reported_cost is not None and not result.from_cache:
        lines.append(words("report.reported", provider=result.provider, amount=f"{result.reported_cost:g}",
                           unit=result.estimate.unit))
    if result.provider == LOCAL:
        lines.append(words("report.ranLocally", model=result.task_id.removeprefix(LOCAL + ":")))
    elif result.task_id:
        lines.append(words("report.task", provider=result.provider, task=result.task_id))
    lines.extend(result.notes)
    return "\n".join(lines)


def batch_total(count: int, usd: float, words: Words = ENGLISH_WORDS) -> str:
    """The line above a batch's receipts."""
    return words("report.batch", count=count, total=f"${usd:.3f}")
