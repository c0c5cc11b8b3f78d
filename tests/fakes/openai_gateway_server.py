"""A loopback stand-in for an OpenAI-images-compatible gateway reselling FLUX.2 [flex] (APIYI,
laozhang.ai, anyfast), shaped by the gateway's profile.

Two servers on 127.0.0.1: the gateway (`POST {prefix}/images/generations`, and `{prefix}/images/edits`
for multipart edits) and a delivery host on another port that serves `data[0].url` links without
a key and expires them after `result_expiry` seconds (BFL's links, which APIYI hands out, last 10
minutes and then answer 404). It answers the way the gateways' pages show: {created, data: [{url}]}
or [{b64_json}] as the profile's `answer_form` says; errors in the OpenAI envelope
{"error": {message, type, code}}. The gateways document no failure shape of their own: a failed
generation is answered 200 with an error and no data (what relays built on one-api do), a
moderation refusal 400 with code content_policy_violation.

APIYI documents its edit route three ways, and all three are accepted: JSON `input_image`,
`input_image_2` ... string fields to /images/generations (data URIs or URLs); multipart `image[]`
files to /images/edits; multipart with URL strings in `image`, `input_image_2` ... to /images/edits.
`edit_forms` records which one each request used.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from comfyui_flux2_flex.nodes.engine.providers.gateway_profiles import (
    BUILT_IN_PROFILES, OPENAI_IMAGES, GatewayProfile,
)

from .loopback import LoopbackFake, LoopbackServer, Request, Response
from .pictures import encoded_image_size, render_result
from .stand_ins import StandIn, register

MEGAPIXEL = 1024 * 1024
RANGES = {"steps": (1, 50), "guidance": (1.5, 10.0), "safety_tolerance": (0, 5)}
JSON_FORM, MULTIPART_FILES, MULTIPART_URLS = "json input_image fields", "multipart image[] files", "multipart URLs"


@dataclass
class GenerationPlan:
    """How the next call ends: an image by default, else a failure or a moderation refusal."""

    failed: str | None = None
    moderated: bool = False


def error(status: int, message: str, code: str = "invalid_request") -> Response:
    return Response.json({"error": {"message": message, "type": "invalid_request_error", "code": code}}, status)


class FakeOpenAIGateway(LoopbackFake):
    """Start with `with FakeOpenAIGateway(profile) as gateway:`; the client's base URL is `api_url`
    (the origin: the profile's prefix is served under it)."""

    def __init__(self, profile: GatewayProfile, api_key: str = "sk-gateway-test-0123456789",
                 result_expiry: float = 600.0) -> None:
        super().__init__(api_key)
        self.profile = profile
        self.result_expiry = result_expiry
        self.generated: list[dict[str, Any]] = []  # the settings of each image made (and billed)
        self.edit_forms: list[str] = []
        self._results: dict[str, tuple[bytes, float]] = {}
        self.api = LoopbackServer(self._handle)
        self.delivery = LoopbackServer(self._deliver)

    @property
    def servers(self) -> tuple[LoopbackServer, ...]:
        return (self.api, self.delivery)

    def _handle(self, request: Request) -> Response:
        scheme = f"{self.profile.auth_scheme} " if self.profile.auth_scheme else ""
        if request.headers.get(self.profile.auth_header.lower()) != scheme + self.api_key:
            return error(401, "Invalid token (request id: 2026120604)", code="invalid_api_key")
        prefix = self.profile.prefix
        if request.method != "POST" or request.path not in (prefix + "/images/generations", prefix + "/images/edits"):
            return error(404, "Invalid URL", code="not_found")
        if self.submit_script:
            return self.submit_script.popleft()
        try:
            body, references = self._read(request)
        except ValueError as problem:
            return error(400, str(problem))
        problem = self._problem(body, references)
        if problem:
            return error(400, problem)
        plan = self.next_plan(GenerationPlan)
        if plan.moderated:
            return error(400, "Request Moderated: the prompt was flagged by the safety filter",
                         code="content_policy_violation")
        if plan.failed:
            return Response.json({"error": {"message": f"upstream error: {plan.failed}", "type": "upstream_error"},
                                  "data": []})
        return self._generate(body, references)

    def _read(self, request: Request) -> tuple[dict[str, Any], list[str]]:
        """The settings and the references (data URIs or URLs), from whichever documented form was sent."""
        names = ["input_image", *(f"input_image_{index}" for index in range(2, 9))]
        if request.path.endswith("/images/generations"):
            body = request.json()
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            references = [body.pop(name) for name in names if body.get(name)]
            if references:
                self.edit_forms.append(JSON_FORM)
            return body, references
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise ValueError("the edit route takes multipart/form-data")
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + request.body)
        body: dict[str, Any] = {}
        files, urls = [], {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if part.get_filename():
                files.append(f"data:{part.get_content_type()};base64,{base64.b64encode(payload).decode()}")
            elif name in ("image", *names):
                urls[name] = payload.decode()
            else:
                body[name] = _form_value(payload.decode())
        self.edit_forms.append(MULTIPART_FILES if files else MULTIPART_URLS)
        return body, files or [urls[name] for name in ("image", *names[1:]) if name in urls]

    def _problem(self, body: dict[str, Any], references: list[str]) -> str | None:
        """The first thing the gateway would refuse with a 400, as its pages describe."""
        if body.get("model") != self.profile.model:
            return f"model {body.get('model')!r} not found"
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return "prompt is required"
        width, height = _size(body)
        if width is not None and (width % 16 or height % 16):
            return "width and height must be multiples of 16"
        if width is not None and width * height > 4 * MEGAPIXEL:
            return "total pixels must be at most 4MP"
        names = self.profile.field_names
        for setting, (low, high) in RANGES.items():
            value = body.get(names[setting] or "")
            if value is not None and not low <= value <= high:
                return f"{names[setting]} must be between {low} and {high}"
        if len(references) > self.profile.max_references:
            return f"at most {self.profile.max_references} reference images"
        if not all(reference.startswith(("data:image/", "https://", "http://")) for reference in references):
            return "each reference must be a URL or a data:image/...;base64 URL"
        return None

    def _generate(self, body: dict[str, Any], references: list[str]) -> Response:
        width, height = _size(body)
        if width is None:  # without a size the output follows the first input (APIYI's edit page)
            width, height = encoded_image_size(references[0]) if references else (1024, 1024)
        image_format = body.get(self.profile.field_names["output_format"] or "", "jpeg")
        seed = body.get(self.profile.field_names["seed"] or "")
        image = render_result(width, height, int(seed or 0), image_format)
        with self._lock:
            self.generated.append({**body, "references": len(references)})
        if self.profile.answer_form == "b64_json":
            return Response.json({"created": int(time.time()), "data": [{"b64_json": base64.b64encode(image).decode()}]})
        result_id = uuid.uuid4().hex
        self._results[result_id] = (image, time.monotonic())
        return Response.json({"created": int(time.time()), "data": [
            {"url": f"{self.delivery.url}/results/{result_id}/sample.{image_format}?signature=secret-signature"}]})

    def _deliver(self, request: Request) -> Response:
        result = self._results.get(request.path.removeprefix("/results/").split("/")[0])
        if result is None or time.monotonic() - result[1] > self.result_expiry:
            return Response(404, b"not found")
        return Response(200, result[0], {"Content-Type": "application/octet-stream"})


def _size(body: dict[str, Any]) -> tuple[int | None, int | None]:
    if isinstance(body.get("size"), str) and "x" in body["size"]:
        width, height = body["size"].split("x", 1)
        return int(width), int(height)
    if body.get("width") and body.get("height"):
        return int(body["width"]), int(body["height"])
    return None, None


def _form_value(text: str) -> Any:
    """Multipart fields are text: numbers and booleans read back as what they stand for."""
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


register(*(
    StandIn(
        provider=name, start=lambda profile=profile: FakeOpenAIGateway(profile), plan=GenerationPlan,
        failed=lambda reason: GenerationPlan(failed=reason), moderated=lambda: GenerationPlan(moderated=True),
        running=GenerationPlan, synchronous=True, delivers_link=profile.answer_form == "url",
    )
    for name, profile in BUILT_IN_PROFILES.items() if profile.family == OPENAI_IMAGES
))
