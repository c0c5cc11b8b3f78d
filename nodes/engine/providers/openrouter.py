"""OpenRouter: black-forest-labs/flux.2-flex through OpenRouter's Image API, answered at once.

Contract, from OpenRouter's public pages (read 2026-11-23):
- Image API, https://openrouter.ai/docs/guides/overview/multimodal/image-generation (page of
  2026-08-13), and the `/images` operation of the OpenAPI description published with the docs
  (github.com/OpenRouterTeam/docs, openapi/openapi.yaml):
  `POST https://openrouter.ai/api/v1/images` with `Authorization: Bearer <key>` and
  {model, prompt, aspect_ratio, seed, output_format, input_references: [{type: "image_url",
  image_url: {url}}] (HTTP(S) or base64 data URLs), provider: {options: {<slug>: {...}}}}. The
  answer is {created, data: [{b64_json, media_type}], usage: {cost (USD)}}. OpenRouter forwards
  `provider.options` keys an endpoint lists in `allowed_passthrough_parameters` and drops the
  rest silently.
- Billing, same page: "A generation is either completed and billed in full, or it fails and is
  not billed"; a generation that does not complete answers 502, and a client that disconnects is
  not billed for the image it did not receive. The pack still never resends after a lost answer.
- Errors, "Errors and Debugging" (https://openrouter.ai/docs/api-reference/errors-and-debugging):
  {"error": {code, message, metadata}} with 400 (bad parameters; `metadata.error_type`
  content_policy_violation or refusal for moderation), 401, 402 (no credits), 403 (permissions,
  guardrail, or moderation with `metadata.reasons`), 408, 429 and 503 (both with Retry-After), 502
  (the model failed); the `/images` operation adds 413, 524 and 529 (provider overloaded). 529 is
  waited out; 500, 503 and 524 follow the pack's rule for an unknown outcome: reported, never
  resent.
- Price, https://openrouter.ai/black-forest-labs/flux.2-flex: "$0.06 for each megapixel on both
  input and output side" (see pricing.py).

Chat completions with `modalities` (which the model page shows) also return the image, but carry
flux's settings only in a free-form `image_config`; the Image API is OpenRouter's dedicated
route, takes a seed and passes BFL's own settings through.

How each flex setting maps:
- steps, guidance, safety_tolerance: `provider.options["black-forest-labs"]`, OpenRouter's
  passthrough (its docs show steps and guidance for flux.2-pro). That the flex endpoint lists
  exactly these three comes from its endpoint record as a third party read it on 2026-10-04;
  not re-read here [uncertain].
- seed and output_format (png, jpeg, webp): top-level fields.
- size: the Image API documents `size` as explicit "WxH" pixels that take precedence
  (https://openrouter.ai/docs/api/api-reference/images/generate-an-image). Whether the flex
  endpoint takes it is learned once per process from its endpoint record,
  `GET /api/v1/images/models/black-forest-labs/flux.2-flex/endpoints`
  (https://openrouter.ai/docs/api/api-reference/images/list-endpoints-for-an-image-model: "each
  endpoint's definitive supported parameters"; a parameter absent from `supported_parameters`
  is not supported). That record is public model metadata, read without the key. Where `size`
  is listed the exact "WxH" is sent (or, where it lists only some sizes, the nearest of them,
  said before Run); where it is not, or the record cannot be read, the nearest preset aspect
  ratio is sent and OpenRouter picks the pixel count, and the notes and the price line say so.
- prompt_upsampling: not passed through; BFL's default (on) applies, and turning it off is noted.
- references: `input_references` as data URIs (PNG unless the user picks another upload format), at most 8 (the flex endpoint's 0-8, same
  third-party reading [uncertain]).
"""

from __future__ import annotations

import math
import operator
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..lazy_httpx import httpx
from .. import errors
from ..errors import TransientError
from ..request import ASPECT_PRESETS, FlexRequest
from ..transport import retry_after_seconds
from .base import POLL_TIMEOUT, ProviderLimits
from .fields import as_number
from .http_errors import error_envelope, provider_detail
from .moderation import MODERATION_MARKERS
from .synchronous import SynchronousProvider, finished_task, image_data_uri, request_id, unanswered
from .tasks import SubmittedTask

if TYPE_CHECKING:
    from .upload_body import ImageEncoder

MODEL = "black-forest-labs/flux.2-flex"
IMAGES_PATH = "/images"
ENDPOINTS_PATH = f"/images/models/{MODEL}/endpoints"
PROVIDER_SLUG = "black-forest-labs"  # the key of BFL's endpoint in provider.options
MAX_REFERENCES = 8
MODERATION_ERROR_TYPES = frozenset({"content_policy_violation", "refusal"})
NOT_BILLED_STATUSES = frozenset({408, 502})  # the generation failed or timed out: not billed, per the docs
# The Image API's 529 "Provider Overloaded": nothing was generated, so it is waited out. Its 503
# ("no available model provider that meets your routing requirements") reads as a refusal too,
# but like every provider's 503 it is kept to the pack's rule: reported, never resent.
OVERLOADED = 529
CENTS_PER_USD = 100

# References travel inside the body as data URIs (OpenRouter accepts them as input_references); its
# image-input guide (https://openrouter.ai/docs/guides/overview/multimodal/images) lists PNG, JPEG,
# WebP and GIF as the image types it takes.
UPLOAD_FORMATS = ("png", "jpeg", "webp")


class OpenRouterProvider(SynchronousProvider):
    name = "openrouter"
    label = "OpenRouter"
    key_env_var = "OPENROUTER_API_KEY"
    default_base_url = "https://openrouter.ai/api/v1"
    trusted_domain = None  # one request to the configured host: the key goes nowhere else
    limits = ProviderLimits(max_images=MAX_REFERENCES, upload_formats=UPLOAD_FORMATS)
    data_uri_images = True

    def validate(self, request: FlexRequest) -> FlexRequest:
        """The pack's checks, then what the flex endpoint does with sizes, learned once (see `size_support`)."""
        super().validate(request)
        self.size_support()
        return request

    def size_support(self) -> "SizeSupport":
        """Which sizes the flex endpoint takes: read once per process from its endpoint record (free,
        without the key). A record that could not be read is asked for again after a few minutes,
        not at every price shown on a node (each read would hold up the server's answers)."""
        with _LEARNED_LOCK:
            known, when = _LEARNED.get(self.base_url, (None, 0.0))
        if known is not None and (known.learned or time.monotonic() - when < RELEARN_SECONDS):
            return known
        try:
            response = self.client.get(self.base_url + ENDPOINTS_PATH, headers={"Accept": "application/json"},
                                       timeout=httpx.Timeout(**POLL_TIMEOUT))
            record = response.json() if response.status_code == 200 else None
        except (httpx.TransportError, ValueError):
            record = None
        support = size_support_from_record(record)
        with _LEARNED_LOCK:
            _LEARNED[self.base_url] = (support, time.monotonic())
        return support

    def sent_size(self, request: FlexRequest) -> tuple[int, int] | None:
        """The explicit size sent for this request, or None where only an aspect ratio can go."""
        return self.size_support().nearest(*request.output_size())

    def notes_for(self, request: FlexRequest) -> tuple[str, ...]:
        width, height = request.output_size()
        sent = self.sent_size(request)
        notes = []
        if sent is None:
            notes.append(
                f"OpenRouter takes no exact size for flux.2-flex{self.size_support().why}: it was asked for aspect "
                f"ratio {nearest_aspect_ratio(width, height)} (nearest to {width}x{height}) and picks the pixel count "
                f"itself; the estimate assumes {width}x{height}, the report shows what OpenRouter charged")
        elif sent != (width, height):
            notes.append(f"OpenRouter's flux.2-flex makes only some sizes: {sent[0]}x{sent[1]}, the nearest to "
                         f"{width}x{height}, was asked for")
        if not request.prompt_upsampling:
            notes.append(
                "prompt_upsampling off cannot be passed through OpenRouter: BFL's default (on) applies, so a fixed "
                "seed may not reproduce the same image"
            )
        return tuple(notes)

    def price_line_note(self, request: FlexRequest) -> str:
        sent = self.sent_size(request)
        if sent is None:
            return f"aspect {nearest_aspect_ratio(*request.output_size())} only: OpenRouter picks the size"
        return f"makes {sent[0]}x{sent[1]}, the nearest it can" if sent != request.output_size() else ""

    def build_body(self, request: FlexRequest, encode: ImageEncoder) -> dict[str, Any]:
        """The Image API's body; BFL's own settings ride in provider.options. An explicit size and an
        aspect ratio together are refused (400), so exactly one of them is sent."""
        sent = self.sent_size(request)
        body: dict[str, Any] = {
            "model": MODEL,
            "prompt": request.prompt,
            **({"size": f"{sent[0]}x{sent[1]}"} if sent else {"aspect_ratio": nearest_aspect_ratio(*request.output_size())}),
            "output_format": request.output_format,
            "provider": {"options": {PROVIDER_SLUG: {
                "steps": request.steps, "guidance": request.guidance, "safety_tolerance": request.safety_tolerance,
            }}},
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.images:
            body["input_references"] = [{"type": "image_url", "image_url": {"url": encode(image)}}
                                        for image in request.images]
        return body

    def submit_url(self, request: FlexRequest) -> str:
        return self.base_url + IMAGES_PATH

    def finished(self, answer: dict[str, Any], response: httpx.Response) -> SubmittedTask:
        """{created, data: [{b64_json, media_type}], usage: {cost}}; usage.cost (USD) is kept in cents."""
        data = answer.get("data")
        first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
        image = first.get("b64_json")
        usage = answer.get("usage")
        cost = as_number(usage.get("cost")) if isinstance(usage, dict) else None  # USD
        reference = request_id(answer, response)
        if not isinstance(image, str) or not image:
            charged = f" (it reported ${cost:g})" if cost else ""
            raise unanswered(self, reference, charged, "your OpenRouter activity page")
        return finished_task(self.name, reference, image_data_uri(image, first.get("media_type")),
                             reported_cost=None if cost is None else round(cost * CENTS_PER_USD, 4))

    def raise_for_refusal(self, response: httpx.Response, *, stage: str, task_id: str | None = None) -> None:
        """OpenRouter's own shapes first: moderation, a generation that failed unbilled, an overload."""
        status = response.status_code
        if status < 400:
            return
        error = error_envelope(response)
        metadata = error.get("metadata") if isinstance(error.get("metadata"), dict) else {}
        message = str(error.get("message") or provider_detail(response) or "no details given")
        reasons = tuple(str(reason) for reason in metadata.get("reasons") or ())
        if (metadata.get("error_type") in MODERATION_ERROR_TYPES or (status == 403 and reasons)
                or (status in (400, 502) and any(marker in message.lower() for marker in MODERATION_MARKERS))):
            because = f" ({', '.join(reasons)})" if reasons else ""
            raise errors.ModeratedError(
                f"{self.label} refused the request in moderation: {message}{because}. Change the prompt or input "
                "images; a refused request is not billed.",
                stage="request", reasons=reasons or (message,), task_id=None, provider=self.name, status=status,
                billed=errors.NOT_BILLED,
            )
        if status in NOT_BILLED_STATUSES:
            raise errors.GenerationFailedError(
                f"{self.label} could not finish the image (HTTP {status}): {message}. OpenRouter bills only images "
                "it delivers, so this one is not charged; it was not resent automatically, run again when ready.",
                provider=self.name, status=status, billed=errors.NOT_BILLED,
            )
        if status == OVERLOADED:
            raise TransientError(f"{self.label} has no provider free for flux.2-flex right now (HTTP {status})",
                                 retry_after=retry_after_seconds(response.headers.get("retry-after")), status=status)
        super().raise_for_refusal(response, stage=stage, task_id=task_id)


def nearest_aspect_ratio(width: int, height: int) -> str:
    """The preset aspect ratio (all of them in OpenRouter's list) closest to width:height."""
    target = math.log(width / height)
    return min(ASPECT_PRESETS, key=lambda name: abs(math.log(operator.truediv(*ASPECT_PRESETS[name])) - target))


@dataclass(frozen=True)
class SizeSupport:
    """What the flex endpoint's record says about `size`: any "WxH" (`sizes` None), only the sizes
    listed, or none at all (`takes_size` False: an aspect ratio is sent instead)."""

    learned: bool
    takes_size: bool = False
    sizes: tuple[tuple[int, int], ...] | None = None
    why: str = ""  # for the note, when nothing was learned

    def nearest(self, width: int, height: int) -> tuple[int, int] | None:
        """The size to send for width x height: itself, the nearest listed one, or None."""
        if not self.takes_size:
            return None
        if not self.sizes or (width, height) in self.sizes:
            return width, height
        aspect = math.log(width / height)
        return min(self.sizes, key=lambda size: (abs(math.log(size[0] / size[1]) - aspect),
                                                 abs(size[0] * size[1] - width * height)))


def size_support_from_record(record: Any) -> SizeSupport:
    """The endpoint record's verdict on `size`, from BFL's endpoint (else the first one listed):
    {endpoints: [{provider_slug, supported_parameters: {size: {type, values?}}}]}."""
    endpoints = record.get("endpoints") if isinstance(record, dict) else None
    if not isinstance(endpoints, list) or not endpoints or not all(isinstance(e, dict) for e in endpoints):
        return SizeSupport(learned=False, why=" (its endpoint record could not be read)")
    endpoint = next((e for e in endpoints if e.get("provider_slug") == PROVIDER_SLUG), endpoints[0])
    parameters = endpoint.get("supported_parameters")
    size = parameters.get("size") if isinstance(parameters, dict) else None
    if not isinstance(size, dict):
        return SizeSupport(learned=True, why=" (its endpoint lists no size parameter)")
    values = size.get("values") if size.get("type") == "enum" else None
    if not isinstance(values, list):
        return SizeSupport(learned=True, takes_size=True)
    sizes = tuple(_pixels(value) for value in values if _pixels(value))
    return SizeSupport(learned=True, takes_size=bool(sizes), sizes=sizes or None,
                       why="" if sizes else " (its endpoint lists only named size tiers)")


def _pixels(value: Any) -> tuple[int, int] | None:
    """"1024x768" -> (1024, 768); tier names ("1K") -> None."""
    width, _, height = str(value).partition("x")
    return (int(width), int(height)) if width.isdigit() and height.isdigit() else None


RELEARN_SECONDS = 300.0  # after a record that could not be read
_LEARNED: dict[str, tuple[SizeSupport, float]] = {}  # base URL -> what its flex endpoint takes, and when read
_LEARNED_LOCK = threading.Lock()
