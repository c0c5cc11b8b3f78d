"""A loopback stand-in for OpenRouter's Image API serving black-forest-labs/flux.2-flex.

One server on 127.0.0.1 answering `POST /api/v1/images` at once, as OpenRouter documents it:
{created, data: [{b64_json, media_type}], usage: {cost}}, and the free endpoint record
`GET /api/v1/images/models/black-forest-labs/flux.2-flex/endpoints` (no key needed), which says
whether `size` is supported. `size_values` scripts it: None (default) takes any explicit "WxH"; a
list takes only those; `NO_SIZE` lists no size parameter, and then a size in the body is refused
and an aspect ratio renders about one megapixel at that aspect. It takes a seed,
an output format, up to 8 input_references, and BFL's steps, guidance and safety_tolerance under
provider.options["black-forest-labs"]; other passthrough keys are dropped silently. Errors use
OpenRouter's {"error": {code, message, metadata}} envelope. A test queues answers in `submit_script`,
served before normal handling, in order.
"""

from __future__ import annotations

import base64
import io
import math
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .bfl_server import MEGAPIXEL, billable, render_result
from .loopback import LoopbackFake, LoopbackServer, Request, Response
from .stand_ins import StandIn, register

API_PREFIX = "/api/v1"
MODEL = "black-forest-labs/flux.2-flex"
SLUG = "black-forest-labs"
ASPECT_RATIOS = {"1:1", "1:2", "1:4", "1:8", "2:1", "2:3", "3:2", "3:4", "4:1", "4:3", "4:5", "5:4", "8:1",
                 "9:16", "16:9", "9:19.5", "19.5:9", "9:20", "20:9", "9:21", "21:9", "auto"}
PASSTHROUGH_RANGES = {"steps": (1, 50), "guidance": (1.5, 10.0), "safety_tolerance": (0, 5)}
OUTPUT_FORMATS = {"png", "jpeg", "webp"}
MAX_REFERENCES = 8
USD_PER_MEGAPIXEL = 0.06
NO_SIZE = ("no size parameter",)
ENDPOINTS_PATH = f"{API_PREFIX}/images/models/{MODEL}/endpoints"


@dataclass
class GenerationPlan:
    """How the next generation ends: an image by default, else a failure (502, not billed) or a
    moderation refusal (400 content_policy_violation)."""

    failed: str | None = None
    moderated: bool = False


def error(status: int, message: str, **metadata: Any) -> Response:
    """OpenRouter's error envelope."""
    payload: dict[str, Any] = {"code": status, "message": message}
    if metadata:
        payload["metadata"] = metadata
    return Response.json({"error": payload}, status)


def size_for(aspect_ratio: str) -> tuple[int, int]:
    """At most one megapixel at the aspect ratio, each side a multiple of 16."""
    across, down = (float(part) for part in ("1:1" if aspect_ratio == "auto" else aspect_ratio).split(":"))
    height = math.sqrt(MEGAPIXEL * down / across)
    return int(height * across / down) // 16 * 16, int(height) // 16 * 16


class FakeOpenRouter(LoopbackFake):
    """Start with `with FakeOpenRouter() as openrouter:`; point the client at `openrouter.api_url`."""

    def __init__(self, api_key: str = "sk-or-v1-test-0123456789abcdef",
                 size_values: list[str] | tuple[str, ...] | None = None) -> None:
        super().__init__(api_key)
        self.size_values = size_values
        self.record_readable = True  # False: the endpoint record answers 503
        self.generated: list[dict[str, Any]] = []  # bodies of the images it made and billed
        self.server = LoopbackServer(self._handle)

    @property
    def servers(self) -> tuple[LoopbackServer, ...]:
        return (self.server,)

    @property
    def api_url(self) -> str:
        return self.server.url + API_PREFIX

    @property
    def metadata_reads(self) -> list[Request]:
        return [r for r in self.server.requests if r.path == ENDPOINTS_PATH]

    def endpoint_record(self) -> dict[str, Any]:
        """The flex model's endpoint record, as the list-endpoints operation answers it."""
        parameters: dict[str, Any] = {"aspect_ratio": {"type": "enum", "values": sorted(ASPECT_RATIOS)},
                                      "seed": {"type": "integer"}}
        if self.size_values is None:
            parameters["size"] = {"type": "string"}
        elif self.size_values != NO_SIZE:
            parameters["size"] = {"type": "enum", "values": list(self.size_values)}
        return {"id": MODEL, "endpoints": [{
            "provider_name": "Black Forest Labs", "provider_slug": SLUG, "supported_parameters": parameters,
            "allowed_passthrough_parameters": sorted(PASSTHROUGH_RANGES), "supports_streaming": False,
            "pricing": [{"billable": "output_megapixel", "cost_usd": USD_PER_MEGAPIXEL, "unit": "megapixel"}],
        }]}

    def _handle(self, request: Request) -> Response:
        if request.method == "GET" and request.path == ENDPOINTS_PATH:
            return Response.json(self.endpoint_record()) if self.record_readable else error(503, "Service Unavailable")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "No auth credentials found", error_type="authentication")
        if request.method != "POST" or request.path != API_PREFIX + "/images":
            return error(404, "Not Found", error_type="not_found")
        if self.submit_script:
            return self.submit_script.popleft()
        try:
            body = request.json()
        except ValueError:
            return error(400, "Invalid JSON body", error_type="invalid_request")
        problem = _problem(body, self.size_values)
        if problem:
            return error(400, problem, error_type="invalid_request")
        plan = self.next_plan(GenerationPlan)
        if plan.moderated:
            return error(400, "Input flagged by the provider's content filter", error_type="content_policy_violation")
        if plan.failed:
            return error(502, f"Provider returned error: {plan.failed}", error_type="provider_unavailable")
        return self._generate(body)

    def _generate(self, body: dict[str, Any]) -> Response:
        if "size" in body:
            width, height = (int(side) for side in body["size"].split("x"))
        else:
            width, height = size_for(body.get("aspect_ratio", "1:1"))
        image_format = body.get("output_format", "png")
        image = render_result(width, height, int(body.get("seed", 0)), image_format)
        inputs = sum(billable(w * h) for w, h in _reference_sizes(body))
        with self._lock:
            self.generated.append(body)
        return Response.json({
            "created": int(time.time()),
            "data": [{"b64_json": base64.b64encode(image).decode(), "media_type": f"image/{image_format}"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                      "cost": round(USD_PER_MEGAPIXEL * (billable(width * height) + inputs), 6)},
        })


def _problem(body: Any, size_values: Any) -> str | None:
    """The first thing OpenRouter (or BFL behind it) would refuse with a 400, if any."""
    if not isinstance(body, dict) or body.get("model") != MODEL:
        return "Model not found or not an image model"
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return "prompt: String must contain at least 1 character(s)"
    if body.get("aspect_ratio", "1:1") not in ASPECT_RATIOS:
        return "aspect_ratio: Invalid enum value"
    if "size" in body and "aspect_ratio" in body:
        return "size and aspect_ratio conflict: send one of them"
    if "resolution" in body or ("size" in body and size_values == NO_SIZE):
        return "size/resolution: not supported by any endpoint of this model"
    if "size" in body and size_values is not None and body["size"] not in size_values:
        return f"size: must be one of {', '.join(size_values)}"
    if body.get("output_format", "png") not in OUTPUT_FORMATS:
        return "output_format: Invalid enum value"
    if "seed" in body and not isinstance(body["seed"], int):
        return "seed: Expected integer"
    references = body.get("input_references", [])
    if len(references) > MAX_REFERENCES:
        return f"input_references: this endpoint accepts at most {MAX_REFERENCES}"
    if not all(str(ref.get("image_url", {}).get("url", "")).startswith("data:image/") for ref in references):
        return "input_references: could not load the image"
    options = body.get("provider", {}).get("options", {}).get(SLUG, {})
    for name, (low, high) in PASSTHROUGH_RANGES.items():
        value = options.get(name)
        if value is not None and not low <= value <= high:
            return f"Provider returned error: {name} must be between {low} and {high}"
    return None


def _reference_sizes(body: dict[str, Any]) -> list[tuple[int, int]]:
    sizes = []
    for reference in body.get("input_references", []):
        payload = reference["image_url"]["url"].split(",", 1)[1]
        with Image.open(io.BytesIO(base64.b64decode(payload))) as picture:
            sizes.append(picture.size)
    return sizes


register(StandIn(
    provider="openrouter", start=FakeOpenRouter, plan=GenerationPlan,
    failed=lambda reason: GenerationPlan(failed=reason), moderated=lambda: GenerationPlan(moderated=True),
    running=GenerationPlan, synchronous=True, delivers_link=False,
))
