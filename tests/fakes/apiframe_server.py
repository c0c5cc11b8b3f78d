"""A loopback stand-in for Apiframe's v2 image API (https://docs-v2.apiframe.ai).

Two servers on 127.0.0.1: the API (POST /v2/images/generate answering 202 {jobId, status}, GET
/v2/jobs/{id}) and a delivery host on another port serving the results. It checks X-API-Key as
Apiframe documents (401 missing or invalid, 403 inactive), validates fluxParams against the flex
page's ranges with a 400, honours Idempotency-Key by returning the original job, and walks each
job through the statuses a `JobPlan` scripts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from .loopback import LoopbackFake, LoopbackServer, Request, Response
from .pictures import encoded_image_size, render_result
from .stand_ins import StandIn, register

ResultShape = Literal["url", "images", "image_objects"]
PAUSED_KEY = "afk_paused_key_000"  # a key the stand-in knows as inactive (Apiframe's 403)
RESOLUTION_SIDES = {"0.5 MP": 724, "1 MP": 1024, "2 MP": 1448, "4 MP": 2048}  # side of a square of that size


@dataclass
class JobPlan:
    """One job's poll answers in order (the last repeats); `error` is sent with FAILED."""

    statuses: list[str] = field(default_factory=lambda: ["QUEUED", "PROCESSING", "COMPLETED"])
    error: Any = None
    result_shape: ResultShape = "url"
    credit_cost: float | None = 12
    poll_http_errors: dict[int, int] = field(default_factory=dict)  # poll index -> HTTP status


@dataclass
class _Job:
    id: str
    body: dict[str, Any]
    plan: JobPlan
    width: int
    height: int
    polls: int = 0


class FakeApiframe(LoopbackFake):
    """Start with `with FakeApiframe() as apiframe:`; point the client at `apiframe.api_url`."""

    def __init__(self, api_key: str = "afk_test_key_0123456789", inactive_keys: tuple[str, ...] = ()) -> None:
        super().__init__(api_key)
        self.inactive_keys = inactive_keys
        self.jobs: dict[str, _Job] = {}
        self.idempotency_keys: dict[str, str] = {}  # Idempotency-Key -> jobId
        self.api = LoopbackServer(self._handle_api)
        self.delivery = LoopbackServer(self._handle_delivery)

    @property
    def servers(self) -> tuple[LoopbackServer, ...]:
        return (self.api, self.delivery,)


    @property
    def polls(self) -> list[Request]:
        return [r for r in self.api.requests if r.method == "GET"]

    def all_requests(self) -> list[Request]:
        return self.api.requests + self.delivery.requests

    # API ---------------------------------------------------------------------------------
    def _handle_api(self, request: Request) -> Response:
        key = request.headers.get("x-api-key")
        if not key:
            return Response.json({"error": "API key is required"}, 401)
        if key in self.inactive_keys:
            return Response.json({"error": "API key is inactive"}, 403)
        if key != self.api_key:
            return Response.json({"error": "Invalid API key"}, 401)
        if request.method == "POST" and request.path == "/v2/images/generate":
            return self._submit(request)
        if request.method == "GET" and request.path.startswith("/v2/jobs/"):
            return self._poll(request.path.removeprefix("/v2/jobs/"))
        return Response.json({"error": "Not found"}, 404)

    def _submit(self, request: Request) -> Response:
        if self.submit_script:
            return self.submit_script.popleft()
        body = request.json()
        problem = _validate(body)
        if problem:
            return Response.json({"error": problem}, 400)
        with self._lock:
            replayed = self.idempotency_keys.get(request.headers.get("idempotency-key", ""))
            if replayed:
                return Response.json({"jobId": replayed, "status": "QUEUED"}, 202)
            width, height = _output_size(body["fluxParams"])
            job = _Job(str(uuid.uuid4()), body, self.next_plan(JobPlan), width, height)
            self.jobs[job.id] = job
            if "idempotency-key" in request.headers:
                self.idempotency_keys[request.headers["idempotency-key"]] = job.id
        return Response.json({"jobId": job.id, "status": "QUEUED"}, 202)

    def _poll(self, job_id: str) -> Response:
        job = self.jobs.get(job_id)
        if job is None:
            return Response.json({"error": "Job not found"}, 404)
        index, gateway_error = self.count_poll(job)
        if gateway_error:
            return gateway_error
        statuses = job.plan.statuses
        status = statuses[min(index, len(statuses) - 1)]
        payload: dict[str, Any] = {"id": job.id, "status": status, "model": "flux-2-flex",
                                   "progress": round(100 * min(index + 1, len(statuses)) / len(statuses)),
                                   "result": None, "error": None, "creditCost": None}
        if status == "COMPLETED":
            payload.update(result=self._result(job), creditCost=job.plan.credit_cost)
        elif status == "FAILED":
            payload.update(error=job.plan.error, creditCost=0)
        return Response.json(payload)

    def _result(self, job: _Job) -> Any:
        url = f"{self.delivery.url}/images/{job.id}.png?token=signed-result-token"
        shapes = {"url": url, "images": {"images": [url]}, "image_objects": {"images": [{"url": url}]}}
        return shapes[job.plan.result_shape]

    # delivery ----------------------------------------------------------------------------
    def _handle_delivery(self, request: Request) -> Response:
        job = self.jobs.get(request.path.removeprefix("/images/").split(".")[0])
        if job is None:
            return Response(404, b"not found")
        params = job.body["fluxParams"]
        image_format = params.get("output_format", "png")
        seed = int(params.get("seed") or 0)
        data = render_result(job.width, job.height, seed, {"jpg": "jpeg"}.get(image_format, image_format))
        return Response(200, data, {"Content-Type": "application/octet-stream"})


def _validate(body: Any) -> str | None:
    """The flex page's documented rules, answered as a 400 with one message."""
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str) or not 1 <= len(body["prompt"]) <= 2000:
        return "prompt must be 1-2000 characters"
    if body.get("model") != "flux-2-flex":
        return f"unknown model {body.get('model')!r}"
    params = body.get("fluxParams") or {}
    ranges = {"steps": (1, 50), "guidance": (1.5, 10), "width": (256, 2048), "height": (256, 2048)}
    for name, (low, high) in ranges.items():
        if name in params and not low <= params[name] <= high:
            return f"fluxParams.{name} must be between {low} and {high}"
    if params.get("output_format", "png") not in ("jpg", "png", "webp"):
        return "fluxParams.output_format must be jpg, png or webp"
    if len(params.get("input_images", [])) > 10:
        return "fluxParams.input_images accepts up to 10 images"
    if params.get("resolution", "1 MP") not in RESOLUTION_SIDES:
        return "fluxParams.resolution must be one of 0.5 MP, 1 MP, 2 MP, 4 MP"
    return None


def _output_size(params: dict[str, Any]) -> tuple[int, int]:
    """custom: the size asked; match_input_image: the first image's aspect at the resolution asked."""
    if params.get("aspect_ratio") == "custom":
        return params["width"], params["height"]
    side = RESOLUTION_SIDES[params.get("resolution", "1 MP")]
    if params.get("aspect_ratio") != "match_input_image" or not params.get("input_images"):
        return side, side
    width, height = encoded_image_size(params["input_images"][0])
    scale = side / (width * height) ** 0.5
    return round(width * scale), round(height * scale)


register(StandIn(
    provider="apiframe", start=lambda: FakeApiframe(inactive_keys=(PAUSED_KEY,)), plan=JobPlan,
    failed=lambda reason: JobPlan(statuses=["PROCESSING", "FAILED"], error=reason),
    moderated=lambda: JobPlan(statuses=["FAILED"], error="The prompt was flagged by content moderation"),
    running=lambda: JobPlan(statuses=["PROCESSING"]),
))
