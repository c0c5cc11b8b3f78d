"""A loopback stand-in for Replicate's predictions API with black-forest-labs/flux-2-flex.

Three servers on 127.0.0.1: the API that takes the submit, the host that answers `urls.get`
(another port, so a client that rebuilds the URL instead of using the returned one fails), and
the delivery host for outputs (replicate.delivery in real life, which must never see the key).
Each prediction follows a `PredictionPlan`; its first status is what the submit answers, as a
`Prefer: wait` submit does when the prediction finishes (or not) within the wait.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from .loopback import LoopbackFake, LoopbackServer, Request, Response
from .pictures import encoded_image_size, render_result
from .stand_ins import StandIn, register

MODEL_PATH = "/v1/models/black-forest-labs/flux-2-flex/predictions"
RANGES = {"steps": (1, 50), "guidance": (1.5, 10.0), "safety_tolerance": (1, 5), "width": (256, 2048),
          "height": (256, 2048)}
ASPECT_RATIOS = {"match_input_image", "custom", "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3"}
OUTPUT_FORMATS = {"webp", "jpg", "png"}


@dataclass
class PredictionPlan:
    """Statuses in order: [0] answers the submit, then one per poll (the last one repeats).

    By default the first poll finds the prediction done, which keeps tests fast.
    """

    statuses: list[str] = field(default_factory=lambda: ["starting", "succeeded"])
    error: str | None = None
    output_as_list: bool = False
    poll_http_errors: dict[int, int] = field(default_factory=dict)  # poll index -> HTTP status


@dataclass
class _Prediction:
    id: str
    input: dict[str, Any]
    plan: PredictionPlan
    width: int
    height: int
    polls: int = 0


class FakeReplicate(LoopbackFake):
    """Start with `with FakeReplicate() as replicate:`; point the client at `replicate.api_url`."""

    def __init__(self, api_key: str = "r8_test_token_0123456789") -> None:
        super().__init__(api_key)  # Replicate calls it an API token
        self.predictions: dict[str, _Prediction] = {}
        self.api = LoopbackServer(self._handle_submit)
        self.status_host = LoopbackServer(self._handle_get)
        self.delivery = LoopbackServer(self._handle_delivery)

    @property
    def servers(self) -> tuple[LoopbackServer, ...]:
        return (self.api, self.status_host, self.delivery,)


    def _authorised(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    # API ---------------------------------------------------------------------------------
    def _handle_submit(self, request: Request) -> Response:
        if request.path != MODEL_PATH or request.method != "POST":
            return _problem(404, "Not found", "The requested resource could not be found.")
        if not self._authorised(request):
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        if self.submit_script:
            return self.submit_script.popleft()
        body = request.json()
        model_input = body.get("input") if isinstance(body, dict) else None
        problems = _validate(model_input)
        if problems:
            detail = "".join(f"- input.{name}: {text}\n" for name, text in problems)
            return Response.json({"detail": detail, "status": 422, "title": "Input validation failed",
                                  "invalid_fields": [{"field": f"input.{n}", "description": t} for n, t in problems]},
                                 422)
        sizes = _input_sizes(model_input)
        if model_input.get("aspect_ratio") == "custom":
            width, height = model_input["width"], model_input["height"]
        else:
            width, height = sizes[0] if sizes else (1024, 1024)
        with self._lock:
            prediction = _Prediction(uuid.uuid4().hex[:20], model_input, self.next_plan(PredictionPlan), width, height)
            self.predictions[prediction.id] = prediction
        return Response.json(self._prediction_json(prediction, prediction.plan.statuses[0]), 201)

    # urls.get ----------------------------------------------------------------------------
    def _handle_get(self, request: Request) -> Response:
        if not self._authorised(request):
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        prediction = self.predictions.get(request.path.removeprefix("/v1/predictions/"))
        if prediction is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        index, gateway_error = self.count_poll(prediction)
        if gateway_error:
            return gateway_error
        statuses = prediction.plan.statuses
        return Response.json(self._prediction_json(prediction, statuses[min(index + 1, len(statuses) - 1)]))

    def _prediction_json(self, prediction: _Prediction, status: str) -> dict[str, Any]:
        get_url = f"{self.status_host.url}/v1/predictions/{prediction.id}"
        output: Any = None
        if status == "succeeded":
            extension = prediction.input.get("output_format", "webp")
            output = f"{self.delivery.url}/xezq/{prediction.id}/out-0.{extension}"
            output = [output] if prediction.plan.output_as_list else output
        return {
            "id": prediction.id, "model": "black-forest-labs/flux-2-flex", "version": "hidden",
            "input": {k: v for k, v in prediction.input.items() if k != "input_images"},
            "status": status, "output": output,
            "error": prediction.plan.error if status == "failed" else None, "logs": "",
            "urls": {"get": get_url, "cancel": f"{get_url}/cancel", "stream": f"{self.delivery.url}/stream"},
            "created_at": "2026-11-23T10:00:00.000Z",
        }

    # delivery ----------------------------------------------------------------------------
    def _handle_delivery(self, request: Request) -> Response:
        prediction = self.predictions.get(request.path.removeprefix("/xezq/").split("/")[0])
        if prediction is None:
            return Response(404, b"not found")
        image_format = {"jpg": "jpeg"}.get(prediction.input["output_format"], prediction.input["output_format"])
        data = render_result(prediction.width, prediction.height, int(prediction.input.get("seed") or 0), image_format)
        return Response(200, data, {"Content-Type": f"image/{image_format}"})


def _problem(status: int, title: str, detail: str) -> Response:
    """Replicate's error shape (RFC 7807 problem details)."""
    return Response.json({"title": title, "detail": detail, "status": status}, status)


def _validate(model_input: Any) -> list[tuple[str, str]]:
    if not isinstance(model_input, dict) or not isinstance(model_input.get("prompt"), str):
        return [("prompt", "prompt is required")]
    problems = []
    for name, (low, high) in RANGES.items():
        value = model_input.get(name)
        if value is not None and not low <= value <= high:
            problems.append((name, f"Must be between {low} and {high}"))
    if model_input.get("aspect_ratio", "1:1") not in ASPECT_RATIOS:
        problems.append(("aspect_ratio", "aspect_ratio must be one of the allowed values"))
    if model_input.get("output_format", "webp") not in OUTPUT_FORMATS:
        problems.append(("output_format", "output_format must be one of: webp, jpg, png"))
    images = model_input.get("input_images", [])
    if len(images) > 10:
        problems.append(("input_images", "at most 10 items"))
    if any(not str(uri).startswith(("data:image/", "https://")) for uri in images):
        problems.append(("input_images", "Does not match format 'uri'"))
    return problems


def _input_sizes(model_input: dict[str, Any]) -> list[tuple[int, int]]:
    return [encoded_image_size(uri) for uri in model_input.get("input_images", [])]


register(StandIn(
    provider="replicate", start=FakeReplicate, plan=PredictionPlan,
    failed=lambda reason: PredictionPlan(statuses=["starting", "failed"], error=reason),
    moderated=lambda: PredictionPlan(statuses=["starting", "failed"], error="NSFW content detected in the output"),
    running=lambda: PredictionPlan(statuses=["starting", "processing"]),
))
