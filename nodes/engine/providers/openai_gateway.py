"""Gateways in the OpenAI images shape (APIYI, laozhang.ai, anyfast, ...): one paid POST, answered
with the image, driven by a `GatewayProfile`.

Contract common to the family (sources in each profile; the APIYI pages are
https://docs.apiyi.com/en/api-capabilities/flux/text-to-image and
https://docs.apiyi.com/en/api-capabilities/flux-image-edit, laozhang.ai's
https://docs.laozhang.ai/en/api-capabilities/flux-image-edit):
- `POST {origin}{prefix}/images/generations`, `Authorization: Bearer <key>`, JSON with `model`,
  `prompt`, the size as `size` "WxH" or as `width`/`height` (multiples of 16, at most 4 MP), and
  BFL's settings under the names the profile gives (`steps`/`guidance` on APIYI,
  `inference_steps`/`guidance_scale` elsewhere). The gateway wraps BFL's submit-and-poll into
  this one synchronous call.
- References: BFL's `input_image`, `input_image_2` ... `input_image_8` as string fields of the JSON
  body, each a `data:image/...;base64,` URI (APIYI's English edit page, laozhang.ai); sending
  `input_image` switches the call to editing, and without a size the output follows the first
  input. A profile may instead send multipart `image[]` files to `{prefix}/images/edits` (APIYI's
  image-edit page). APIYI's Chinese page wants public URLs in multipart fields, which would
  need the images hosted somewhere public first, so it is not offered.
- Answer: {created, data: [{url}] or [{b64_json}]}. A `url` is BFL's own signed delivery link
  (APIYI, laozhang.ai: valid 10 minutes): it is fetched at once, without the key, since the
  delivery host is not the gateway.
- None of these pages documents a moderation error shape or whether a failed call is billed: an
  error status is read like any provider's (http_errors), moderation recognised by its words, and
  an answer lost after sending is reported as possibly billed and never sent again.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from ..lazy_httpx import httpx
from .. import errors
from ..images import MIME_TYPES, upload_all_base64
from ..request import FlexRequest
from .base import ProviderLimits
from .bfl import input_image_field
from .gateway_profiles import GatewayProfile
from .http_errors import error_envelope, format_detail, provider_detail
from .moderation import MODERATION_MARKERS
from .synchronous import RESPONSE_TIMEOUT, SynchronousProvider, delivered_image, request_id
from .tasks import SubmittedTask

if TYPE_CHECKING:
    from .upload_body import ImageEncoder

GENERATIONS_PATH = "/images/generations"
EDITS_PATH = "/images/edits"
# BFL's delivery links, which APIYI and laozhang.ai hand out; a download may redirect only there.
RESULT_DOMAINS = ("bfl.ai",)
# The gateways document png, jpeg and webp for references (APIYI's edit page); PNG is the default.
UPLOAD_FORMATS = ("png", "jpeg", "webp")


class OpenAIImagesGateway(SynchronousProvider):
    """A provider whose every difference from its siblings is in `profile` (see `gateway_provider`)."""

    profile: GatewayProfile
    trusted_domain = None  # the key goes to the configured gateway host only
    result_domains = RESULT_DOMAINS
    data_uri_images = True

    def fallback_base_url(self, environ) -> str:
        return self.profile.origin

    def notes_for(self, request: FlexRequest) -> tuple[str, ...]:
        """Settings the profile says this gateway takes no field for: named, not silently dropped."""
        dropped = [setting for setting, name in self.profile.field_names.items() if name is None]
        return tuple(f"{self.label} takes no {setting} field: {setting}={request.settings()[setting]!r} was not "
                     "sent, the gateway's default applies" for setting in dropped)

    def submit_url(self, request: FlexRequest) -> str:
        multipart = request.images and self.profile.reference_form == "multipart_image_array"
        return self.base_url + self.profile.prefix + (EDITS_PATH if multipart else GENERATIONS_PATH)

    def build_body(self, request: FlexRequest, encode: ImageEncoder) -> dict[str, Any]:
        """The gateway's JSON body: model, prompt, size in its style, settings under its names."""
        body: dict[str, Any] = {"model": self.profile.model, "prompt": request.prompt}
        if request.width is not None:
            if self.profile.size_style == "size":
                body["size"] = f"{request.width}x{request.height}"
            else:
                body["width"], body["height"] = request.width, request.height
        settings = request.settings()
        for setting, name in self.profile.field_names.items():
            if name is not None and settings.get(setting) is not None:
                body[name] = settings[setting]
        for index, image in enumerate(request.images):
            body[input_image_field(index)] = encode(image)
        return body

    def submit(self, request: FlexRequest) -> SubmittedTask:
        timeout = httpx.Timeout(**RESPONSE_TIMEOUT)
        if request.images and self.profile.reference_form == "multipart_image_array":
            response = self.send_submit(self.submit_url(request), headers={}, timeout=timeout,
                                        **multipart_form(request, self.build_body(request, lambda image: "")))
        else:
            response = self.post_submit(request, timeout=timeout)
        return self.finished(self.read_json(response, stage="submit"), response)

    def finished(self, answer: dict[str, Any], response: httpx.Response) -> SubmittedTask:
        """{data: [{url}] or [{b64_json}]}: a link fetched at once without the key, or the bytes."""
        reference = request_id(answer, response)
        delivered = delivered_image(self.name, answer, reference)
        if delivered is not None:
            return delivered
        failure = error_envelope(response).get("message") or format_detail(answer.get("error") or "no image in the answer")
        raise errors.GenerationFailedError(
            f"{self.label} answered request {reference} without an image ({failure}). It may have been billed and "
            f"was not resent: check your {self.label} dashboard before running again.",
            provider=self.name, task_id=reference, billed=errors.MAYBE_BILLED,
        )

    def raise_for_refusal(self, response: httpx.Response, *, stage: str, task_id: str | None = None) -> None:
        """A refusal whose words say moderation is a moderation error; the rest as every provider's."""
        if response.status_code in (400, 422, 451):
            message = str(error_envelope(response).get("message") or provider_detail(response) or "")
            if any(marker in message.lower() for marker in MODERATION_MARKERS):
                raise errors.ModeratedError(
                    f"{self.label} refused the request in moderation: {message}. Change the prompt or input images.",
                    stage="request", reasons=(message,), task_id=None, provider=self.name,
                    status=response.status_code, billed=errors.NOT_BILLED,
                )
        super().raise_for_refusal(response, stage=stage, task_id=task_id)


def multipart_form(request: FlexRequest, body: dict[str, Any]) -> dict[str, Any]:
    """The body as multipart form fields plus one `image[]` file per reference (APIYI's image-edit
    page); the references' JSON placeholders are left out."""
    image_fields = {input_image_field(index) for index in range(len(request.images))}
    data = {name: str(value).lower() if isinstance(value, bool) else str(value)
            for name, value in body.items() if name not in image_fields}
    mime = MIME_TYPES[request.upload_format]
    files = [("image[]", (f"reference-{index + 1}.{request.upload_format}", base64.b64decode(bytes(encoded)), mime))
             for index, encoded in enumerate(upload_all_base64(list(request.images), request.upload_format))]
    return {"data": data, "files": files}


def openai_gateway_limits(profile: GatewayProfile) -> ProviderLimits:
    return ProviderLimits(max_images=profile.max_references, upload_formats=UPLOAD_FORMATS)
