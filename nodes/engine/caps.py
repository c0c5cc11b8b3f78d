"""The most paid requests one run may send, so a wired batch size or a long image batch cannot
quietly turn into hundreds of paid images.

The cap is FLUX_FLEX_MAX_PAID_REQUESTS (default 32), read when a run starts, so raising it is a
deliberate act that the refusal itself explains.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from .errors import NOT_BILLED, PaidRequestCapError
from .prepared import PreparedRequest

CAP_ENV_VAR = "FLUX_FLEX_MAX_PAID_REQUESTS"
DEFAULT_MAX_PAID_REQUESTS = 32


def paid_request_cap(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    raw = env.get(CAP_ENV_VAR, "").strip()
    try:
        return max(1, int(raw)) if raw else DEFAULT_MAX_PAID_REQUESTS
    except ValueError:
        raise PaidRequestCapError(f"{CAP_ENV_VAR} = {raw!r} is not a whole number; unset it or set, say, 64.",
                                  billed=NOT_BILLED) from None


def check_paid_request_cap(prepared: Sequence[PreparedRequest], environ: Mapping[str, str] | None = None) -> None:
    """Refuse a run of more paid requests than the cap, with its price and how to allow it."""
    cap = paid_request_cap(environ)
    if len(prepared) <= cap or all(item.estimate.usd == 0 for item in prepared):
        return  # within the cap, or free (the local provider)
    prices = [item.estimate.usd for item in prepared]
    total = f"about ${sum(prices):.2f}" if None not in prices else "price not published"
    raise PaidRequestCapError(
        f"This run would send {len(prepared)} paid requests ({total}), over the limit of {cap} per run. "
        f"Nothing was sent. Lower batch_size or the number of images, or allow more by setting the environment "
        f"variable {CAP_ENV_VAR} (for example to {len(prepared)}) before starting ComfyUI or the CLI.",
        billed=NOT_BILLED,
    )
