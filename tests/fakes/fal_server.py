"""A loopback stand-in for fal's queue API with fal-ai/flux-2-flex and fal-ai/flux-2-flex/edit.

Two servers on 127.0.0.1: the queue (queue.fal.run: submit, status, result) and the CDN that
serves images (fal.media, which must never see the key). As on real fal, the status and result
paths drop the submit's /edit, and the model validates the input only when it runs: a bad
input shows up as a 422 on the response_url, not on the submit. Each request follows a
`RequestPlan` scripted by the test.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from .loopback import LoopbackFake, LoopbackServer, Request, Response
from .pictures import encoded_image_size, render_result
from .stand_ins import StandIn, register

APP = "/fal-ai/flux-2-flex"
RANGES = {"num_inference_steps": (2, 50), "guidance_scale": (1.5, 10.0)}
SAFETY_TOLERANCES = {"1", "2", "3", "4", "5"}
SIZE_PRESETS = {"square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"}
FAL_ERROR_HEADERS = {"X-Fal-Retryable": "false"}


@dataclass
class RequestPlan:
    """Statuses per poll (the last repeats), and how the finished request answers.

    By default the first poll finds the request done, which keeps tests fast; tests of the
    lifecycle script IN_QUEUE and IN_PROGRESS before it.
    """

    statuses: list[str] = field(default_factory=lambda: ["COMPLETED"])
    status_error: tuple[str, str] | None = None  # (error, error_type) on the COMPLETED status
    result_error: Response | None = None  # what the response_url answers instead of the result
    poll_http_errors: dict[int, int] = field(default_factory=dict)  # status poll index -> HTTP status
    nsfw: bool = False


@dataclass
class _QueuedRequest:
    id: str
    edit: bool
    body: dict[str, Any]
    plan: RequestPlan
    polls: int = 0


class FakeFal(LoopbackFake):
    """Start with `with FakeFal() as fal:`; point the client at `fal.api_url`."""

    def __init__(self, api_key: str = "fal-key-id:fal-key-secret-0123456789") -> None:
        super().__init__(api_key)
        self.requests: dict[str, _QueuedRequest] = {}
        self.queue = LoopbackServer(self._handle_queue)
        self.cdn = LoopbackServer(self._handle_cdn)

    @property
    def servers(self) -> tuple[LoopbackServer, ...]:
        return (self.queue, self.cdn,)


    # queue -------------------------------------------------------------------------------
    def _handle_queue(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Key {self.api_key}":
            return Response.json({"detail": "Cannot access application 'fal-ai/flux-2-flex'. Authentication is "
                                            "required to access this application."}, 401)
        if request.method == "POST" and request.path in (APP, APP + "/edit"):
            return self._submit(request)
        parts = request.path.removeprefix(APP + "/requests/").split("/")
        queued = self.requests.get(parts[0]) if request.path.startswith(APP + "/requests/") else None
        if queued is None or request.method != "GET":
            return Response.json({"detail": "Not Found"}, 404)
        return self._status(queued) if parts[1:] == ["status"] else self._result(queued)

    def _submit(self, request: Request) -> Response:
        if self.submit_script:
            return self.submit_script.popleft()
        with self._lock:
            queued = _QueuedRequest(uuid.uuid4().hex, request.path.endswith("/edit"), request.json(),
                                    self.next_plan(RequestPlan))
            self.requests[queued.id] = queued
        base = f"{self.queue.url}{APP}/requests/{queued.id}"
        return Response.json({"request_id": queued.id, "response_url": base, "status_url": f"{base}/status",
                              "cancel_url": f"{base}/cancel", "queue_position": 0})

    def _status(self, queued: _QueuedRequest) -> Response:
        index, gateway_error = self.count_poll(queued)
        if gateway_error:
            return gateway_error
        status = queued.plan.statuses[min(index, len(queued.plan.statuses) - 1)]
        payload: dict[str, Any] = {"status": status, "request_id": queued.id,
                                   "response_url": f"{self.queue.url}{APP}/requests/{queued.id}"}
        if status == "IN_QUEUE":
            payload["queue_position"] = 2
        if status == "COMPLETED" and queued.plan.status_error:
            payload["error"], payload["error_type"] = queued.plan.status_error
        return Response.json(payload)

    def _result(self, queued: _QueuedRequest) -> Response:
        if queued.plan.result_error is not None:
            return queued.plan.result_error
        problems = _validate(queued.body, edit=queued.edit)
        if problems:
            return Response.json({"detail": problems}, 422, FAL_ERROR_HEADERS)
        width, height = self._output_size(queued)
        return Response.json({
            "images": [{"url": f"{self.cdn.url}/files/{queued.id}/out.{queued.body.get('output_format', 'jpeg')}",
                        "width": width, "height": height, "content_type": "image/png"}],
            "seed": queued.body.get("seed", 424242),
            "has_nsfw_concepts": [queued.plan.nsfw],
        })

    def _output_size(self, queued: _QueuedRequest) -> tuple[int, int]:
        size = queued.body.get("image_size", "auto" if queued.edit else "landscape_4_3")
        if isinstance(size, dict):
            return size["width"], size["height"]
        if size == "auto":
            return _image_sizes(queued.body)[0]
        return 1024, 768

    # CDN ---------------------------------------------------------------------------------
    def _handle_cdn(self, request: Request) -> Response:
        queued = self.requests.get(request.path.removeprefix("/files/").split("/")[0])
        if queued is None:
            return Response(404, b"not found")
        width, height = self._output_size(queued)
        data = render_result(width, height, int(queued.body.get("seed", 0)), queued.body.get("output_format", "jpeg"))
        return Response(200, data, {"Content-Type": "image/png"})


def _problem(field_name: str, message: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", field_name], "msg": message, "type": kind}


def _validate(body: Any, *, edit: bool) -> list[dict[str, Any]]:
    """fal's model-side checks, answered in its {"detail": [{loc, msg, type}]} shape."""
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        return [_problem("prompt", "Field required", "missing")]
    problems = []
    for name, (low, high) in RANGES.items():
        value = body.get(name)
        if value is not None and not low <= value <= high:
            problems.append(_problem(name, f"Input should be between {low} and {high}", "value_error"))
    if body.get("safety_tolerance", "2") not in SAFETY_TOLERANCES:
        problems.append(_problem("safety_tolerance", "Input should be '1', '2', '3', '4' or '5'", "literal_error"))
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        problems.append(_problem("output_format", "Input should be 'jpeg' or 'png'", "literal_error"))
    size = body.get("image_size")
    if size is not None and not isinstance(size, dict) and size not in SIZE_PRESETS | ({"auto"} if edit else set()):
        problems.append(_problem("image_size", "Input should be a valid image size", "literal_error"))
    if edit and not body.get("image_urls"):
        problems.append(_problem("image_urls", "Field required", "missing"))
    if not all(str(url).startswith("data:image/") for url in body.get("image_urls", [])):
        problems.append(_problem("image_urls", "Could not load the image", "image_load_error"))
    return problems


def _image_sizes(body: dict[str, Any]) -> list[tuple[int, int]]:
    return [encoded_image_size(uri) for uri in body.get("image_urls", [])]


register(StandIn(
    provider="fal", start=FakeFal, plan=RequestPlan,
    failed=lambda reason: RequestPlan(status_error=(reason, "runner_disconnected")),
    moderated=lambda: RequestPlan(nsfw=True),
    running=lambda: RequestPlan(statuses=["IN_PROGRESS"]),
))
