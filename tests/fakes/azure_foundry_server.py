"""A loopback stand-in for a Microsoft Foundry resource with a FLUX.2-flex deployment.

Two servers on 127.0.0.1: the resource endpoint, which answers BFL's provider-specific route
`POST /providers/blackforestlabs/v1/flux-2-flex?api-version=preview` (with `Authorization:
Bearer <key>`) at once with {"created", "data": [{"b64_json"}]}, as Microsoft's page and the
clients that call it describe; and blob storage, which serves the image when `url_results` asks
for a link instead (it must never see the key). The body is BFL's flex body under the
deployment's model name, PNG or JPEG only, references as raw base64 in input_image ..
input_image_10. Errors use Azure's {"error": {code, message, innererror}} envelope. A test
queues answers in `submit_script`, served before normal handling, in order.
"""

from __future__ import annotations

import base64
import io
import time
import uuid
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .bfl_server import FIELD_RANGES, render_result
from .loopback import LoopbackFake, LoopbackServer, Request, Response
from .stand_ins import StandIn, register

ROUTE = "/providers/blackforestlabs/v1/flux-2-flex"
API_VERSION = "preview"
MAX_REFERENCES = 10
MAX_OUTPUT_PIXELS = 4 * 1024 * 1024
OUTPUT_FORMATS = {"png", "jpeg"}


@dataclass
class GenerationPlan:
    """How the next generation ends: an image by default, else a 200 answer without one, carrying
    the failure's reason or the content filter's verdict on the image."""

    failed: str | None = None
    moderated: bool = False


def error(status: int, code: str, message: str, inner_code: str | None = None) -> Response:
    """Azure's error envelope."""
    payload: dict[str, Any] = {"code": code, "message": message}
    if inner_code:
        payload["innererror"] = {"code": inner_code, "content_filter_result": {"sexual": {"filtered": True}}}
    return Response.json({"error": payload}, status)


def reference_field(index: int) -> str:
    return "input_image" if index == 0 else f"input_image_{index + 1}"


class FakeAzureFoundry(LoopbackFake):
    """Start with `with FakeAzureFoundry() as foundry:`; point the client at `foundry.api_url`."""

    def __init__(self, api_key: str = "azure-foundry-test-key-0123456789", deployment: str = "FLUX.2-flex") -> None:
        super().__init__(api_key)
        self.deployment = deployment
        self.url_results = False
        self.generated: list[dict[str, Any]] = []  # bodies of the images it made and billed
        self._images: dict[str, bytes] = {}
        self.resource = LoopbackServer(self._handle)
        self.blob = LoopbackServer(self._handle_blob)

    @property
    def servers(self) -> tuple[LoopbackServer, ...]:
        return (self.resource, self.blob)

    def _handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. Make "
                                     "sure to provide a valid key for an active subscription and use a correct "
                                     "regional API endpoint for your resource.")
        if request.method != "POST" or request.path != ROUTE or request.query.get("api-version") != API_VERSION:
            return error(404, "404", "Resource not found")
        if self.submit_script:
            return self.submit_script.popleft()
        try:
            body = request.json()
        except ValueError:
            return error(400, "BadRequest", "The request body is not valid JSON.")
        if not isinstance(body, dict) or body.get("model") != self.deployment:
            return error(404, "DeploymentNotFound", "The API deployment for this resource does not exist.")
        problem = _problem(body)
        if problem:
            return error(400, "BadRequest", problem)
        plan = self.next_plan(GenerationPlan)
        if plan.moderated:
            return Response.json({"created": int(time.time()), "data": [
                {"content_filter_results": {"sexual": {"filtered": True, "severity": "high"}}}]})
        if plan.failed:  # the shape of a failed generation is not documented [uncertain]
            return Response.json({"created": int(time.time()), "data": [],
                                  "error": {"code": "GenerationFailed", "message": plan.failed}})
        return self._generate(body)

    def _generate(self, body: dict[str, Any]) -> Response:
        references = _reference_sizes(body)
        width, height = (body["width"], body["height"]) if "width" in body else (references[0] if references
                                                                                else (1024, 1024))
        image_format = body.get("output_format", "jpeg")
        image = render_result(width, height, int(body.get("seed", 0)), image_format)
        with self._lock:
            self.generated.append(body)
            name = f"{uuid.uuid4().hex}.{image_format}"
            self._images[name] = image
        item = ({"url": f"{self.blob.url}/images/{name}"} if self.url_results
                else {"b64_json": base64.b64encode(image).decode()})
        return Response.json({"created": int(time.time()), "data": [item]},
                             headers={"apim-request-id": str(uuid.uuid4())})

    def _handle_blob(self, request: Request) -> Response:
        image = self._images.get(request.path.removeprefix("/images/"))
        return Response(200, image, {"Content-Type": "image/png"}) if image else Response(404, b"not found")


def _problem(body: dict[str, Any]) -> str | None:
    """The first thing BFL's route would refuse with a 400, if any."""
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return "prompt is required."
    for name, (low, high) in FIELD_RANGES.items():
        value = body.get(name)
        if value is not None and not low <= value <= high:
            return f"{name} must be between {low} and {high}."
    if body.get("output_format", "jpeg") not in OUTPUT_FORMATS:
        return "output_format must be 'jpeg' or 'png'."
    if ("width" in body) != ("height" in body) or ("width" in body and (
            min(body["width"], body["height"]) < 64 or body["width"] * body["height"] > MAX_OUTPUT_PIXELS)):
        return "width and height must be at least 64 and at most 4 MP together."
    fields = [key for key in body if key.startswith("input_image")]
    if len(fields) > MAX_REFERENCES or any(key not in {reference_field(i) for i in range(MAX_REFERENCES)}
                                            for key in fields):
        return f"At most {MAX_REFERENCES} reference images (input_image .. input_image_{MAX_REFERENCES})."
    if any(str(body[key]).startswith("data:") for key in fields):
        return "Reference images are raw base64, without a data: prefix."
    return None


def _reference_sizes(body: dict[str, Any]) -> list[tuple[int, int]]:
    sizes = []
    for index in range(MAX_REFERENCES):
        if body.get(reference_field(index)):
            with Image.open(io.BytesIO(base64.b64decode(body[reference_field(index)]))) as picture:
                sizes.append(picture.size)
    return sizes


register(StandIn(
    provider="azure-foundry", start=FakeAzureFoundry, plan=GenerationPlan,
    failed=lambda reason: GenerationPlan(failed=reason), moderated=lambda: GenerationPlan(moderated=True),
    running=GenerationPlan, synchronous=True, delivers_link=False,
))
