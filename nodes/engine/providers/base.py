"""The one small interface every provider implements: submit -> poll -> fetch.

The runner (engine.runner) owns the lifecycle: retries that are safe, waiting, progress,
cancellation and never resubmitting. A provider only translates: the common request into its
own body, its responses into `SubmittedTask` / `PollUpdate` (tasks.py), and its errors into the pack's
error types through `http_errors.raise_for_http_error`, so every provider fails with the same
clear words.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from ..lazy_httpx import httpx
from .. import errors
from ..errors import SubmitOutcomeUnknown, TransientError
from ..keys import ApiKey, KeyScope, resolve_api_key
from ..poll_timing import PollTiming
from ..request import (
    HEIGHT, LOSSLESS_UPLOAD_FORMAT, MAX_INPUT_IMAGES, MEGAPIXEL, WIDTH, FlexRequest, validate_request,
)

if TYPE_CHECKING:
    from .tasks import PollUpdate, SubmittedTask
    from .upload_body import ImageEncoder

POLL_TIMEOUT = dict(connect=15.0, read=30.0, write=30.0, pool=30.0)  # a poll answers small and fast
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True)
class ProviderLimits:
    """What this provider accepts, checked by the request validation before any traffic."""

    max_images: int = MAX_INPUT_IMAGES
    max_input_pixels: int = 4 * MEGAPIXEL  # each input image is downscaled to at most this
    max_concurrency: int = 24  # tasks in flight per account (BFL's default; a 429 means wait)
    # Image formats the provider documents for uploaded images; where its documentation names
    # none, only PNG, which every image API reads. Each provider says where its list comes from.
    upload_formats: tuple[str, ...] = (LOSSLESS_UPLOAD_FORMAT,)


class Provider(ABC):
    """A FLUX.2 [flex] endpoint. Subclasses set the class attributes and the three steps."""

    name: str
    label: str
    key_env_var: str
    key_name: str | None = None  # name of the stored key when shared with another provider (bfl-eu uses bfl's)
    key_header: str = "Authorization"  # the header that carries the key ...
    key_prefix: str = "Bearer "  # ... after this prefix
    default_base_url: str
    trusted_domain: str | None = None
    # Domains the provider delivers results from: a download is redirected only within these (and
    # the result URL's own host), so a compromised link cannot bounce it to an arbitrary server.
    result_domains: tuple[str, ...] = ()
    limits: ProviderLimits = ProviderLimits()
    poll_timing: PollTiming = PollTiming()  # what the provider documents about its tasks' timing
    # Per-account values stored like keys (never in a workflow), name -> environment variable:
    # an endpoint that is the user's own resource (Microsoft Foundry) rather than a fixed host.
    stored_settings: Mapping[str, str] = MappingProxyType({})
    stored_setting_examples: Mapping[str, str] = MappingProxyType({})  # name -> a value's shape, for the form
    data_uri_images = False  # images as data: URIs (where the API expects an image URL), else raw base64

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
        self.base_url = (base_url or env.get(self.base_url_env_var()) or self.fallback_base_url(env)).rstrip("/")
        self._api_key = api_key
        self._environ = env
        self._client = client  # the process's shared client unless one is given, made on first use
        self.key_scope = KeyScope(self.base_url, self.trusted_domain)

    def fallback_base_url(self, environ: Mapping[str, str]) -> str:
        """The base URL when none is given and the URL override variable is unset."""
        return self.default_base_url

    @property
    def client(self) -> httpx.Client:
        """The HTTP client, created when the first request is sent: a cache hit or a dry run never
        pays for the connection pool and the TLS certificate store (about 65 ms)."""
        if self._client is None:
            from ..transport import shared_client  # the HTTP layer loads with the first request, like the client

            self._client = shared_client()
        return self._client

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

    def headers(self) -> dict[str, str]:
        """The key in the provider's own header, asking for JSON back; built per call, never stored."""
        return {self.key_header: self.key_prefix + self.api_key.reveal(), "Accept": "application/json"}

    def validate(self, request: FlexRequest) -> FlexRequest:
        """Check the request against this provider's limits; subclasses add their own rules.

        The upload format matters only when there are images to upload: a text-to-image request
        is never refused for a format it would not use.
        """
        validate_request(request, max_images=self.limits.max_images)
        if request.images:
            self.check_upload_format(request.upload_format)
        return request

    def check_upload_format(self, upload_format: str) -> None:
        """Refuse an upload format this provider is not documented to take, naming the ones it is."""
        allowed = self.limits.upload_formats
        if upload_format not in allowed:
            raise errors.InvalidRequestError(
                "upload_format", upload_format,
                f"{' or '.join(allowed)} on {self.label} (the image formats it is documented to take)",
                provider=self.name)

    def notes_for(self, request: FlexRequest) -> tuple[str, ...]:
        """Settings this provider cannot honour exactly, said aloud instead of dropped silently."""
        return ()

    def price_line_note(self, request: FlexRequest) -> str:
        """A few words for the price shown before Run where the provider will not make exactly what
        was asked (OpenRouter's size); empty when it will."""
        return ""

    @abstractmethod
    def submit_url(self, request: FlexRequest) -> str:
        """The URL a submit of this request is posted to (the dry run prints it)."""

    @abstractmethod
    def build_body(self, request: FlexRequest, encode: ImageEncoder) -> dict[str, Any]:
        """The provider's JSON body; `encode` turns each input image into what the body carries."""

    def dry_run_body(self, request: FlexRequest) -> dict[str, Any]:
        """The exact body that would be sent, with each image replaced by a short description."""
        return self.build_body(request, lambda image: f"<{request.upload_format} image {image.width}x{image.height}, "
                                                      "omitted>")

    @abstractmethod
    def submit(self, request: FlexRequest) -> SubmittedTask:
        """Send the request once. Raise TransientError only when nothing can have been created."""

    @abstractmethod
    def poll(self, task: SubmittedTask, *, polls_so_far: int) -> PollUpdate:
        """Ask once how the task is doing. Raise TransientError for failures worth polling past.

        `polls_so_far` lets a provider treat an early "not found" as replication lag.
        """

    def holds_answer(self, task: SubmittedTask) -> bool:
        """Whether the task already carries its final answer (a provider that answered the submit with
        the result), so its first poll is sent at once instead of on the schedule."""
        return False

    def fetch(self, task: SubmittedTask, update: PollUpdate, *, deadline: float | None = None,
              stop: threading.Event | None = None) -> bytes:
        """Download the finished image, without the key (result hosts are not the provider's API);
        `deadline` and `stop` bound the whole download (see transport.download_result)."""
        if update.result_url is None:
            raise errors.GenerationFailedError(
                f"{self.label} reported task {task.task_id} finished but sent no image URL.",
                provider=self.name, task_id=task.task_id, billed=errors.BILLED,
            )
        if update.result_url.startswith("data:"):
            from ..images import decode_data_uri  # numpy and Pillow: loaded by a download, not by every provider

            return decode_data_uri(update.result_url)
        from ..transport import download_result

        return download_result(update.result_url, client=self.client, redirect_domains=self.result_domains,
                               deadline=deadline, stop=stop)

    # Helpers shared by the concrete providers -------------------------------------------

    def post_submit(
        self, request: FlexRequest, *, headers: Mapping[str, str] | None = None, timeout: httpx.Timeout | None = None
    ) -> httpx.Response:
        """POST the request's body to its submit URL; classify transport failures by whether the
        request may have arrived. `headers` adds to (or overrides) the key and JSON headers;
        `timeout` replaces the client's for providers that answer only once the image is made."""
        from .upload_body import build_upload_body  # with the first submit: a cache hit or a dry run sends none

        body = build_upload_body(lambda encode: self.build_body(request, encode), request.upload_format,
                                 data_uri=self.data_uri_images)
        return self.send_submit(self.submit_url(request), headers={**JSON_HEADERS, **(headers or {}),
                                                                   "Content-Length": str(body.length)},
                                timeout=timeout, content=body)

    def send_submit(self, url: str, *, headers: Mapping[str, str], timeout: httpx.Timeout | None = None,
                    **body: Any) -> httpx.Response:
        """POST a submit's body (`content=`, or `files=` and `data=` for a form) to `url` with the key:
        a connection refused is retried, a connection lost after sending is an unknown outcome."""
        self.key_scope.check(url, "submit")
        options = {} if timeout is None else {"timeout": timeout}
        try:
            response = self.client.post(url, headers={**self.headers(), **headers}, **body, **options)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            from ..transport import describe_host

            raise TransientError(
                f"could not connect to {describe_host(url)} ({type(error).__name__})", unreachable=True
            ) from None
        except httpx.TransportError as error:
            raise SubmitOutcomeUnknown(
                f"The connection to {self.label} broke after the request was sent ({type(error).__name__}). "
                "The task may have been created and billed, so it was not resent: check your "
                f"{self.label} dashboard before running again.",
                provider=self.name, billed=errors.MAYBE_BILLED,
            ) from None
        self.raise_for_refusal(response, stage="submit")
        return response

    def get_poll(self, url: str, task: SubmittedTask) -> httpx.Response:
        """GET a status URL of `task` with the key, after checking the key may go there."""
        self.key_scope.check(url, "polling")
        try:
            response = self.client.get(url, headers=self.headers(), timeout=httpx.Timeout(**POLL_TIMEOUT))
        except httpx.TransportError as error:
            raise TransientError(f"poll failed ({type(error).__name__})") from None
        self.raise_for_refusal(response, stage="poll", task_id=task.task_id)
        return response

    def raise_for_refusal(self, response: httpx.Response, *, stage: str, task_id: str | None = None) -> None:
        """Turn an HTTP error status into the pack's error; a provider whose error shapes say more
        than the status (fal's 403 for an account locked for its balance) recognises them first."""
        from .http_errors import raise_for_http_error

        raise_for_http_error(response, self.name, self.label, stage=stage, task_id=task_id)

    def read_json(self, response: httpx.Response, *, stage: str) -> dict[str, Any]:
        """The answer's JSON object; a garbled submit answer is an unknown outcome, never a resubmit."""
        from .http_errors import json_body

        return json_body(response, self.name, self.label, stage=stage)

    def unknown_outcome(self, what: str) -> SubmitOutcomeUnknown:
        """A 2xx submit answer without what identifies the task: it may exist and be billed."""
        return SubmitOutcomeUnknown(
            f"{self.label} accepted the request but returned no {what}; the task may be billed. "
            f"Check your {self.label} dashboard.",
            provider=self.name, billed=errors.MAYBE_BILLED,
        )


def check_custom_size(request: FlexRequest, low: int, high: int, provider: Provider) -> None:
    """Resellers built on Replicate's schema take explicit sizes only within a narrower range."""
    if request.width is None:
        return
    for spec, value in ((WIDTH, request.width), (HEIGHT, request.height)):
        if not low <= value <= high:
            raise errors.InvalidRequestError(spec.name, value, f"from {low} to {high} on {provider.label} "
                                             "(its custom size range)", provider=provider.name)
