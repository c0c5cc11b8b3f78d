"""Microsoft Foundry (Azure AI Foundry): a FLUX.2-flex deployment on the user's own resource,
through the BFL provider-specific route, answered at once.

Contract, from Microsoft's "Deploy and use FLUX models in Microsoft Foundry" (ms.date
2026-03-23), https://learn.microsoft.com/azure/foundry/foundry-models/how-to/use-foundry-models-flux:
- `POST <endpoint>/providers/blackforestlabs/v1/flux-2-flex?api-version=preview`, where the
  endpoint is the resource's (`https://<resource>.api.cognitive.microsoft.com` in the page's
  examples; `https://<resource>.services.ai.azure.com` works the same way in the clients that
  use it). `Authorization: Bearer <key>` carries either the resource's API key or a Microsoft
  Entra ID token scoped to https://cognitiveservices.azure.com/.default.
- The flex body: {model: "FLUX.2-flex", prompt, width, height, seed, safety_tolerance,
  output_format, guidance (1.5-10, default 4.5), steps (at most 50, default 50)}, references as
  raw base64 in input_image, input_image_2, ... (BFL's names); flex takes up to 10 references,
  outputs PNG or JPG, at most 4 MP. Access to FLUX.2-flex needs an approved registration; its
  rate limits are 5, 10 or 25 requests a minute depending on the tier. "Foundry doesn't provide
  built-in content filtering for FLUX models at deployment time."
- The answer: the page says only "a JSON response containing a URL or base64-encoded image
  data". {"data": [{"b64_json"}]} (or "url") is what the clients that call this route read
  (LiteLLM's azure_ai FLUX 2 configuration, Microsoft Foundry samples by third parties)
  [uncertain]; both forms are accepted, and there is nothing to poll.
- Errors: Azure's {"error": {"code", "message", "innererror": {"code"}}}. A filtered prompt is a
  400 with code content_filter or content_policy_violation (inner code
  ResponsibleAIPolicyViolation), as Azure OpenAI answers [uncertain for FLUX, which the page says
  has no built-in filter: BFL's own moderation words are recognised too]; 401/403 a wrong key,
  an expired token or no registration; 404 no deployment; 429 the rate limit, with Retry-After.
- Price: no per-megapixel figure readable from Microsoft (see pricing.py).

How each flex setting maps: steps, guidance, seed, safety_tolerance, width and height are BFL's
own fields (without an explicit size BFL follows the first input image). output_format webp is
not offered (PNG or JPG), so PNG is sent and the notes say so. prompt_upsampling is sent as BFL's
field, but Microsoft's page does not list it for flex, so turning it off is noted as possibly
ignored. The optional deployment name goes in `model` (default FLUX.2-flex, the model ID in
Microsoft's example) [uncertain whether Foundry routes by it; the URL names the model].
References go as PNG only: Microsoft's page says "base64" and names no image format, so the
default ProviderLimits (PNG) apply until it does.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

from ..lazy_httpx import httpx
from .. import errors
from ..keys import ApiKey, stored_setting
from ..request import FlexRequest
from .base import ProviderLimits
from .bfl import flex_body
from .http_errors import error_envelope, format_detail, provider_detail
from .moderation import MODERATION_MARKERS
from .synchronous import SynchronousProvider, delivered_image, first_data_item, request_id, unanswered
from .tasks import SubmittedTask

if TYPE_CHECKING:
    from .upload_body import ImageEncoder

MODEL_ID = "FLUX.2-flex"
ROUTE = "/providers/blackforestlabs/v1/flux-2-flex"
API_VERSION = "preview"
ENDPOINT_SETTING = "azure-foundry-endpoint"
DEPLOYMENT_SETTING = "azure-foundry-deployment"
PLACEHOLDER_ENDPOINT = "https://<resource>.services.ai.azure.com"  # shown in dry runs until one is set
MAX_REFERENCES = 10
# FLUX.2-flex's lowest rate-limit tier is 5 requests a minute: more at once would only collect 429s.
MAX_CONCURRENCY = 5
OUTPUT_FORMATS = {"png": "png", "jpeg": "jpeg", "webp": "png"}  # Foundry outputs PNG or JPG
CONTENT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation", "contentfilter"})
POLICY_VIOLATION = "ResponsibleAIPolicyViolation"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class AzureFoundryProvider(SynchronousProvider):
    name = "azure-foundry"
    label = "Microsoft Foundry"
    key_env_var = "AZURE_FOUNDRY_API_KEY"
    default_base_url = PLACEHOLDER_ENDPOINT
    trusted_domain = None  # the key goes to the configured resource endpoint only
    limits = ProviderLimits(max_images=MAX_REFERENCES, max_concurrency=MAX_CONCURRENCY)
    stored_settings = MappingProxyType(
        {ENDPOINT_SETTING: "AZURE_FOUNDRY_ENDPOINT", DEPLOYMENT_SETTING: "AZURE_FOUNDRY_DEPLOYMENT"}
    )
    stored_setting_examples = MappingProxyType({ENDPOINT_SETTING: PLACEHOLDER_ENDPOINT, DEPLOYMENT_SETTING: MODEL_ID})

    endpoint_configured = True  # False once the fallback below finds no endpoint anywhere

    def fallback_base_url(self, environ: Mapping[str, str]) -> str:
        """The endpoint is the user's resource: after an explicit one and FLUX_FLEX_AZURE_FOUNDRY_URL,
        AZURE_FOUNDRY_ENDPOINT or the stored entry; without any, a placeholder no request is sent to."""
        endpoint = self._setting(ENDPOINT_SETTING, environ)
        self.endpoint_configured = bool(endpoint)
        return endpoint or PLACEHOLDER_ENDPOINT

    @property
    def api_key(self) -> ApiKey:
        """Resolved on first use; without an endpoint there is nowhere to send it."""
        if not self.endpoint_configured:
            raise errors.MissingApiKeyError(self.name, self.stored_settings[ENDPOINT_SETTING], what="endpoint")
        return super().api_key

    def validate(self, request: FlexRequest) -> FlexRequest:
        """The endpoint must be an https URL (plain http only to this machine, for tests and proxies)."""
        super().validate(request)
        if self.endpoint_configured:
            parts = urlsplit(self.base_url)
            if not parts.hostname or not (parts.scheme == "https" or
                                          (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)):
                raise errors.InvalidRequestError(
                    self.stored_settings[ENDPOINT_SETTING], self.base_url,
                    f"an https URL such as {PLACEHOLDER_ENDPOINT} (your Foundry resource's endpoint)",
                    provider=self.name,
                )
        return request

    def notes_for(self, request: FlexRequest) -> tuple[str, ...]:
        notes = []
        if OUTPUT_FORMATS[request.output_format] != request.output_format:
            notes.append(f"Microsoft Foundry cannot encode {request.output_format}: the image comes back as png")
        if not request.prompt_upsampling:
            notes.append(
                "prompt_upsampling off was sent, but Microsoft's page does not list it for FLUX.2-flex: Foundry may "
                "ignore it and rewrite the prompt anyway"
            )
        return tuple(notes)

    def build_body(self, request: FlexRequest, encode: ImageEncoder) -> dict[str, Any]:
        """BFL's flex body under Foundry's model name; references as raw base64, as in Microsoft's example."""
        return {"model": self._setting(DEPLOYMENT_SETTING, self._environ) or MODEL_ID,
                **flex_body(request, encode, output_format=OUTPUT_FORMATS[request.output_format])}

    def submit_url(self, request: FlexRequest) -> str:
        """The BFL route on the resource; a pasted full route URL is used as it is."""
        url = self.base_url if "/providers/" in self.base_url else self.base_url + ROUTE
        return url if "?" in url else f"{url}?api-version={API_VERSION}"

    def finished(self, answer: dict[str, Any], response: httpx.Response) -> SubmittedTask:
        """{"data": [{"b64_json"} or {"url"}]}: inline bytes, or a link downloaded without the key."""
        reference = request_id(answer, response)
        delivered = delivered_image(self.name, answer, reference)
        if delivered is not None:
            return delivered
        if _filtered(first_data_item(answer).get("content_filter_results")):
            raise errors.ModeratedError(
                f"{self.label} withheld the image of request {reference} in its content filter. Try a different "
                "seed or adjust the prompt.",
                stage="content", reasons=("content filter",), task_id=reference, provider=self.name,
                billed=errors.MAYBE_BILLED,
            )
        failure = answer.get("error")
        if failure:  # Azure's own word that it failed
            raise errors.GenerationFailedError(
                f"{self.label} answered request {reference} without an image ({format_detail(failure)}). It may have "
                "been billed and was not resent: check Cost Management in the Azure portal before running again.",
                provider=self.name, task_id=reference, billed=errors.MAYBE_BILLED,
            )
        raise unanswered(self, reference, "", "Cost Management in the Azure portal")

    def raise_for_refusal(self, response: httpx.Response, *, stage: str, task_id: str | None = None) -> None:
        """Azure's shapes first: a content filter, a key or token refused, no deployment there."""
        status = response.status_code
        if status < 400:
            return
        error = error_envelope(response)
        inner = error.get("innererror") or error.get("inner_error")
        inner_code = inner.get("code") if isinstance(inner, dict) else None
        message = str(error.get("message") or provider_detail(response) or "no details given")
        code = str(error.get("code") or "").lower()
        facts = dict(provider=self.name, status=status, billed=errors.NOT_BILLED)
        if status == 400 and (code in CONTENT_FILTER_CODES or inner_code == POLICY_VIOLATION
                              or any(marker in message.lower() for marker in MODERATION_MARKERS)):
            raise errors.ModeratedError(
                f"{self.label} refused the request in its content filter: {message}. Change the prompt or input "
                "images.",
                stage="request", reasons=(message,), task_id=None, **facts,
            )
        if status in (401, 403):
            raise errors.AuthenticationError(
                f"{self.label} refused the credentials (HTTP {status}): {message}. Check AZURE_FOUNDRY_API_KEY (a "
                "Microsoft Entra ID token expires after about an hour) and that FLUX.2-flex's registration was "
                "approved for this resource.", **facts,
            )
        if status == 404:
            raise errors.ProviderRejectedError(
                f"{self.label} found no FLUX.2-flex deployment at this endpoint (HTTP 404): {message}. Check "
                "AZURE_FOUNDRY_ENDPOINT and that FLUX.2-flex is deployed on that resource.", **facts,
            )
        super().raise_for_refusal(response, stage=stage, task_id=task_id)

    @classmethod
    def _setting(cls, name: str, environ: Mapping[str, str]) -> str:
        return stored_setting(name, cls.stored_settings[name], environ=environ)


def _filtered(results: Any) -> bool:
    """Azure's content_filter_results: {category: {"filtered": bool, ...}}."""
    return isinstance(results, dict) and any(
        isinstance(verdict, dict) and verdict.get("filtered") is True for verdict in results.values()
    )
