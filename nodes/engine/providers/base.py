"""The one small interface every provider implements: submit -> poll -> fetch.

The runner (engine.runner) owns the lifecycle: retries that are safe, waiting, progress,
cancellation and never resubmitting. A provider only translates: the common request into its
own body, its responses into `SubmittedTask` / `PollUpdate`, and its errors into the pack's
error types through `raise_for_http_error`, so every provider fails with the same clear words.
"""

from __future__ import annotations

import base64
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import httpx
import numpy as np

from .. import errors
from ..keys import ApiKey, KeyScope, resolve_api_key
from ..redaction import redact
from ..request import HEIGHT, MAX_INPUT_IMAGES, MEGAPIXEL, WIDTH, FlexRequest, validate_request
from ..transport import describe_host, download_result, shared_client

ImageEncoder = Callable[[np.ndarray], str]


@dataclass(frozen=True)
class ProviderLimits:
    """What this provider accepts, checked by the request validation before any traffic."""

    max_images: int = MAX_INPUT_IMAGES
    max_input_pixels: int = 4 * MEGAPIXEL  # each input image is downscaled to at most this
    max_concurrency: int = 24  # tasks in flight per account (BFL's default; a 429 means wait)


@dataclass(frozen=True)
class SubmittedTask:
    """A task the provider accepted (and may bill for): poll it, never submit it again."""

    provider: str
    task_id: str
    poll_url: str
    reported_cost: float | None = None
    input_mp: float | None = None
    output_mp: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PollUpdate:
    """One poll's answer: still running (with progress if known) or ready with a result URL."""

    done: bool
    status: str
    progress: float | None = None
    result_url: str | None = None
    seed: int | None = None
    reported_cost: float | None = None  # for providers that state the cost only when the task ends (Apiframe)


class TransientError(Exception):
    """A failure where trying the same call again is safe (a poll or an unsent submit)."""

    def __init__(self, reason: str, *, retry_after: float | None = None, unreachable: bool = False) -> None:
        self.reason = reason
        self.retry_after = retry_after
        self.unreachable = unreachable  # the provider could not be reached at all
        super().__init__(reason)


class SubmitOutcomeUnknown(errors.ProviderUnavailableError):
    """The submit may have reached the provider: resubmitting could bill twice."""


class Provider(ABC):
    """A FLUX.2 [flex] endpoint. Subclasses set the class attributes and the three steps."""

    name: str
    label: str
    key_env_var: str
    key_name: str | None = None  # name of the stored key when shared with another provider (bfl-eu uses bfl's)
    default_base_url: str
    trusted_domain: str | None = None
    # Domains the provider delivers results from: a download is redirected only within these (and
    # the result URL's own host), so a compromised link cannot bounce it to an arbitrary server.
    result_domains: tuple[str, ...] = ()
    limits: ProviderLimits = ProviderLimits()

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: ApiKey | None = None,
        client: httpx.Client | None = None,
        environ: Mapping[str, str] | None = None,
        key_choice: str = "",
    ) -> None:
        env = os.environ if environ is None else environ
        self.key_choice = key_choice  # the name of a stored key; empty: the default key
        self.base_url = (base_url or env.get(self.base_url_env_var()) or self.default_base_url).rstrip("/")
        self._api_key = api_key
        self._environ = env
        self.client = client or shared_client()
        self.key_scope = KeyScope(self.base_url, self.trusted_domain)

    @classmethod
    def base_url_env_var(cls) -> str:
        return "FLUX_FLEX_" + cls.name.upper().replace("-", "_") + "_URL"

    @property
    def api_key(self) -> ApiKey:
        """Resolved on first use, so validation and estimates never need a key."""
        if self._api_key is None:
            self._api_key = resolve_api_key(self.key_name or self.name, self.key_env_var, name=self.key_choice,
                                           environ=self._environ)
        return self._api_key

    def validate(self, request: FlexRequest) -> FlexRequest:
        """Check the request against this provider's limits; subclasses add their own rules."""
        return validate_request(request, max_images=self.limits.max_images)

    def notes_for(self, request: FlexRequest) -> tuple[str, ...]:
        """Settings this provider cannot honour exactly, said aloud instead of dropped silently."""
        return ()

    @abstractmethod
    def build_body(self, request: FlexRequest, encode: ImageEncoder) -> dict[str, Any]:
        """The provider's JSON body; `encode` turns each input image into what the body carries."""

    def dry_run_body(self, request: FlexRequest) -> dict[str, Any]:
        """The exact body that would be sent, with each image replaced by a short description."""
        return self.build_body(request, lambda pixels: f"<image {pixels.shape[1]}x{pixels.shape[0]}, omitted>")

    @abstractmethod
    def submit(self, request: FlexRequest) -> SubmittedTask:
        """Send the request once. Raise TransientError only when nothing can have been created."""

    @abstractmethod
    def poll(self, task: SubmittedTask, *, polls_so_far: int) -> PollUpdate:
        """Ask once how the task is doing. Raise TransientError for failures worth polling past.

        `polls_so_far` lets a provider treat an early "not found" as replication lag.
        """

    def fetch(self, update: PollUpdate) -> bytes:
        """Download the finished image, without the key (result hosts are not the provider's API)."""
        assert update.result_url is not None
        if update.result_url.startswith("data:"):
            return _decode_data_uri(update.result_url)
        return download_result(update.result_url, redirect_domains=self.result_domains)

    # Helpers shared by the concrete providers -------------------------------------------

    def post_submit(self, url: str, *, headers: Mapping[str, str], body: Mapping[str, Any]) -> httpx.Response:
        """POST a submit; classify transport failures by whether the request may have arrived."""
        self.key_scope.check(url, "submit")
        try:
            response = self.client.post(url, headers=dict(headers), content=json.dumps(body).encode())
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise TransientError(
                f"could not connect to {describe_host(url)} ({type(error).__name__})", unreachable=True
            ) from None
        except httpx.TransportError as error:
            raise SubmitOutcomeUnknown(
                f"The connection to {self.label} broke after the request was sent ({type(error).__name__}). "
                "The task may have been created and billed, so it was not resent: check your "
                f"{self.label} dashboard before running again."
            ) from None
        self.raise_for_refusal(response, stage="submit")
        return response

    def get_poll(self, url: str, *, headers: Mapping[str, str]) -> httpx.Response:
        """GET a status URL with the key, after checking the key may go there."""
        self.key_scope.check(url, "polling")
        try:
            response = self.client.get(url, headers=dict(headers))
        except httpx.TransportError as error:
            raise TransientError(f"poll failed ({type(error).__name__})") from None
        self.raise_for_refusal(response, stage="poll")
        return response

    def raise_for_refusal(self, response: httpx.Response, *, stage: str) -> None:
        """Turn an HTTP error status into the pack's error; a provider whose error shapes say more
        than the status (fal's 403 for an account locked for its balance) recognises them first."""
        raise_for_http_error(response, self.label, stage=stage)


def check_custom_size(request: FlexRequest, low: int, high: int, label: str) -> None:
    """Resellers built on Replicate's schema take explicit sizes only within a narrower range."""
    if request.width is None:
        return
    for spec, value in ((WIDTH, request.width), (HEIGHT, request.height)):
        if not low <= value <= high:
            raise errors.InvalidRequestError(spec.name, value, f"from {low} to {high} on {label} (its custom size range)")


def raise_for_http_error(response: httpx.Response, label: str, *, stage: str) -> None:
    """Turn an HTTP error status into the pack's error, with the provider's own explanation.

    On submit, 429 and 503 mean the provider refused before creating anything: safe to retry.
    On a poll every 5xx or 429 is transient: the task exists, so keep polling it.
    """
    status = response.status_code
    if status < 400:
        return
    detail = provider_detail(response)
    suffix = f": {detail}" if detail else ""
    after_submit = " The task was already submitted; it was not resubmitted." if stage == "poll" else ""
    if status in (401, 403):
        raise errors.AuthenticationError(
            f"{label} rejected the API key (HTTP {status}){suffix}. Check that the key is right and active."
            + after_submit
        )
    if status == 402:
        raise errors.InsufficientCreditsError(
            f"{label} says the account has no credits or payment method (HTTP 402){suffix}. Top up and run again."
        )
    if status == 429:
        raise TransientError(f"{label} is busy: too many active tasks on this account (HTTP 429)",
                             retry_after=_retry_after(response))
    if stage == "poll" and status >= 500:
        raise TransientError(f"{label} answered HTTP {status} while polling")
    if stage == "submit" and status == 503:
        raise TransientError(f"{label} is temporarily unavailable (HTTP 503)", retry_after=_retry_after(response))
    if status >= 500:
        raise SubmitOutcomeUnknown(
            f"{label} failed with HTTP {status}{suffix}. The task may or may not have been created, so it was not "
            f"resent automatically: check your {label} dashboard before running again."
        )
    if status in (400, 404, 422):
        raise errors.ProviderRejectedError(f"{label} rejected the request (HTTP {status}){suffix}.")
    raise errors.ProviderRejectedError(f"{label} answered HTTP {status} during {stage}{suffix}.")


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


# Words resellers use when their moderation refuses a task they report only as "failed".
MODERATION_MARKERS = ("nsfw", "flagged", "sensitive", "e005", "moderat", "safety", "content policy")


def moderation_error(message: str, label: str, task: SubmittedTask, *, extra: str = "") -> errors.ModeratedError | None:
    """A ModeratedError when a provider's failure text says moderation refused the task, else None."""
    if not any(marker in message.lower() for marker in MODERATION_MARKERS):
        return None
    return errors.ModeratedError(
        f"{label} refused task {task.task_id} in moderation: {message}. Adjust the prompt or input images, "
        f"or try a different seed.{extra}",
        stage="content", reasons=(message,), task_id=task.task_id,
    )


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


def _decode_data_uri(uri: str) -> bytes:
    try:
        _, payload = uri.split(",", 1)
        return base64.b64decode(payload)
    except ValueError:
        raise errors.ImageDecodeError("The provider returned a malformed data URI as the result.") from None


def json_body(response: httpx.Response, label: str, *, stage: str) -> dict[str, Any]:
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
        raise SubmitOutcomeUnknown(message + f" The task may have been created: check your {label} dashboard.")
    raise TransientError(message)
