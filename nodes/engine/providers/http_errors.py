"""Provider HTTP answers -> the pack's errors: status classification and the provider's own words.

One place decides what each status means for money. A redirect on submit created nothing (it
tells where to send the request) and is not followed. On submit only 429 ("too many active
tasks", documented by BFL, Replicate and fal as a refusal) is safe to retry. No provider documents
that a 5xx, 503 included, means no task was created, so a 5xx on submit is reported as an unknown
outcome and never resent. On a poll every 5xx or 429 is transient: the task exists, so keep
polling it.
"""

from __future__ import annotations

import json
from typing import Any

from ..lazy_httpx import httpx
from .. import errors
from ..errors import SubmitOutcomeUnknown, TransientError
from ..redaction import redact
from ..transport import retry_after_seconds


def raise_for_http_error(response: httpx.Response, provider: str, label: str, *, stage: str,
                         task_id: str | None = None) -> None:
    """Turn an HTTP error status into the pack's error, with the provider's own explanation.

    `provider` is the provider's name (for the error's fields), `label` its name for people,
    `task_id` the task being polled (None on submit).
    """
    status = response.status_code
    if 300 <= status < 400 and stage == "submit":
        # A redirect is an answer about where to send the request, not a task: nothing was created.
        raise errors.ProviderRejectedError(
            f"{label} answered the submit with a redirect (HTTP {status}); it was not followed (it would resend "
            "the request and the key elsewhere) and nothing was created or billed. Check the base URL if you set one.",
            provider=provider, status=status, billed=errors.NOT_BILLED)
    if status < 400:
        return
    detail = provider_detail(response)
    suffix = f": {detail}" if detail else ""
    polled = stage == "poll"
    after_submit = " The task was already submitted; it was not resubmitted." if polled else ""
    facts = dict(provider=provider, status=status, task_id=task_id,
                 billed=errors.MAYBE_BILLED if polled else errors.NOT_BILLED)
    if status in (401, 403):
        raise errors.AuthenticationError(
            f"{label} rejected the API key (HTTP {status}){suffix}. Check that the key is right and active."
            + after_submit, **facts
        )
    if status == 402:
        raise errors.InsufficientCreditsError(
            f"{label} says the account has no credits or payment method (HTTP 402){suffix}. Top up and run again.",
            **facts,
        )
    retry_after = retry_after_seconds(response.headers.get("retry-after"))
    if status == 429:
        raise TransientError(f"{label} is busy: too many active tasks on this account (HTTP 429)",
                             retry_after=retry_after, status=status)
    if polled and status >= 500:
        raise TransientError(f"{label} answered HTTP {status} while polling", status=status)
    if status >= 500:
        raise SubmitOutcomeUnknown(
            f"{label} failed with HTTP {status}{suffix}. The task may or may not have been created, so it was not "
            f"resent automatically: check your {label} dashboard before running again.",
            **{**facts, "billed": errors.MAYBE_BILLED},
        )
    if status in (400, 404, 422):
        raise errors.ProviderRejectedError(f"{label} rejected the request (HTTP {status}){suffix}.", **facts)
    raise errors.ProviderRejectedError(f"{label} answered HTTP {status} during {stage}{suffix}.", **facts)


def provider_detail(response: httpx.Response) -> str:
    """The provider's explanation from a FastAPI-style body ({"detail": ...}) or similar, with any
    key it echoes redacted (before truncation, so no fragment of a key survives)."""
    try:
        body = response.json()
    except ValueError:
        return redact(response.text.strip())[:300]
    if isinstance(body, dict):
        for key in ("detail", "error", "message", "title"):
            if body.get(key):
                return format_detail(body[key])
    return redact(json.dumps(body))[:300]


def format_detail(detail: Any) -> str:
    """FastAPI's [{loc, msg}] list becomes "steps: must be <= 50; width: ..."."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = [str(p) for p in item.get("loc", []) if p != "body"]
                parts.append(f"{'.'.join(loc) + ': ' if loc else ''}{item.get('msg', item)}")
            else:
                parts.append(str(item))
        return "; ".join(parts)
    if isinstance(detail, dict):
        return format_detail(detail.get("message") or detail.get("msg") or json.dumps(detail))
    return redact(str(detail))[:300]


def json_body(response: httpx.Response, provider: str, label: str, *, stage: str) -> dict[str, Any]:
    """Parse a JSON object or say plainly that the provider answered something else.

    After a submit that answered 2xx the task may exist, so a garbled answer must not lead to a
    resubmit: it is reported as an unknown outcome.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    message = f"{label} answered HTTP {response.status_code} with something that is not a JSON object."
    if stage == "submit":
        raise SubmitOutcomeUnknown(message + f" The task may have been created: check your {label} dashboard.",
                                   provider=provider, status=response.status_code, billed=errors.MAYBE_BILLED)
    raise TransientError(message, status=response.status_code)


def error_envelope(response: httpx.Response) -> dict[str, Any]:
    """The {"error": {code, message, ...}} object OpenAI-style APIs answer with, or {}."""
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}
