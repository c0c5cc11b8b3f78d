"""A loopback stand-in for BFL's FLUX.2 [flex] API, as https://docs.bfl.ai/api-reference describes it.

Three servers on 127.0.0.1, each on its own port: the API (submit), the cluster that answers
polls (so a client that rebuilds the polling URL instead of using the returned one fails), and
the delivery host that serves result images without CORS headers and expires them. Each task
follows a `TaskPlan` scripted by the test; the default walks Pending -> Generating -> Ready.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .loopback import LoopbackFake, LoopbackServer, Request, Response
from .pictures import encoded_image_size, render_result
from .stand_ins import StandIn, register

MEGAPIXEL = 1024 * 1024
ACTIVE_TASK_LIMIT = 24
FIELD_RANGES = {"steps": (1, 50), "guidance": (1.5, 10.0), "safety_tolerance": (0, 5)}


@dataclass
class TaskPlan:
    """How one task behaves: its poll statuses in order (the last one repeats), or a latency."""

    statuses: list[str] = field(default_factory=lambda: ["Pending", "Generating", "Ready"])
    details: dict[str, Any] | None = None
    poll_http_errors: dict[int, int] = field(default_factory=dict)  # poll index -> HTTP status
    poll_delays: dict[int, float] = field(default_factory=dict)  # poll index -> seconds before answering
    latency: float | None = None  # if set: Pending with progress until this many seconds pass
    progress_as_percent: bool = False
    report_progress: bool = True  # False: "progress": null, as the spec allows
    visible_after: float = 0.0  # "Task not found" until this many seconds after the submit (replication lag)


@dataclass
class _Task:
    id: str
    body: dict[str, Any]
    plan: TaskPlan
    created: float
    polls: int = 0
    ready_at: float | None = None
    width: int = 0
    height: int = 0


def billable(pixels: int) -> int:
    return max(1, math.ceil(pixels / MEGAPIXEL))


class FakeBfl(LoopbackFake):
    """Start with `with FakeBfl() as bfl:`; point the client at `bfl.api_url`."""

    def __init__(self, api_key: str = "bfl-test-key-0123456789", result_expiry: float = 600.0) -> None:
        super().__init__(api_key)
        self.result_expiry = result_expiry
        self.after_create_script: deque[Response] = deque()  # answered after the task was created (billed)
        self.delivery_script: deque[Response] = deque()  # answered instead of a result download, in order
        self.submit_delay = 0.0  # seconds the API waits before answering a submit
        self.tasks: dict[str, _Task] = {}
        self.peak_active = 0  # most tasks in flight at once: shows whether a client overlaps them
        self.api = LoopbackServer(self._handle_api)
        self.cluster = LoopbackServer(self._handle_poll)
        self.delivery = LoopbackServer(self._handle_delivery)

    # lifecycle ---------------------------------------------------------------------------
    @property
    def servers(self) -> tuple[LoopbackServer, ...]:
        return (self.api, self.cluster, self.delivery,)


    # API ---------------------------------------------------------------------------------
    def _authorised(self, request: Request) -> bool:
        return request.headers.get("x-key") == self.api_key

    def _handle_api(self, request: Request) -> Response:
        if request.path == "/v1/credits" and request.method == "GET":
            return Response.json({"credits": 100.0}) if self._authorised(request) else _forbidden()
        if request.path != "/v1/flux-2-flex" or request.method != "POST":
            return Response.json({"detail": "Not Found"}, 404)
        if not self._authorised(request):
            return _forbidden()
        time.sleep(self.submit_delay)
        if self.submit_script:
            return self.submit_script.popleft()
        body = request.json()
        problems = _validate(body)
        if problems:
            return Response.json({"detail": problems}, 422)
        sizes = _input_sizes(body)  # before the task exists: its clock starts when the submit is answered
        with self._lock:
            active = sum(1 for t in self.tasks.values() if t.ready_at is None)
            if active >= ACTIVE_TASK_LIMIT:
                return Response.json({"detail": "Too many active tasks"}, 429)
            task = self._create_task(body, sizes)
            self.peak_active = max(self.peak_active, active + 1)
            if self.after_create_script:
                return self.after_create_script.popleft()
        polling_url = f"{self.cluster.url}/v1/get_result?id={task.id}"
        in_mp = sum(billable(w * h) for w, h in sizes)
        out_mp = task.width * task.height / MEGAPIXEL
        cost = 5 + 5 * (billable(task.width * task.height) - 1) + 5 * in_mp
        return Response.json({
            "id": task.id, "polling_url": polling_url, "cost": float(cost),
            "input_mp": round(sum(w * h for w, h in sizes) / MEGAPIXEL, 2), "output_mp": round(out_mp, 2),
        })

    def _create_task(self, body: dict[str, Any], sizes: list[tuple[int, int]]) -> _Task:
        plan = self.next_plan(TaskPlan)
        width, height = body.get("width") or 0, body.get("height") or 0
        if not width or not height:
            width, height = sizes[0] if sizes else (1024, 768)
        task = _Task(str(uuid.uuid4()), body, plan, time.monotonic(), width=width, height=height)
        self.tasks[task.id] = task
        return task

    # polling cluster ---------------------------------------------------------------------
    def _handle_poll(self, request: Request) -> Response:
        if request.path != "/v1/get_result":
            return Response.json({"detail": "Not Found"}, 404)
        if not self._authorised(request):
            return _forbidden()
        task = self.tasks.get(request.query.get("id", ""))
        if task is None or time.monotonic() - task.created < task.plan.visible_after:
            return Response.json({"id": request.query.get("id"), "status": "Task not found"})
        index, gateway_error = self.count_poll(task)
        time.sleep(task.plan.poll_delays.get(index, 0.0))
        if gateway_error:
            return gateway_error
        status, progress = self._status_of(task, index)
        progress = progress if task.plan.report_progress else None
        payload: dict[str, Any] = {"id": task.id, "status": status, "result": None, "progress": progress,
                                   "details": task.plan.details, "preview": None}
        if status == "Ready":
            with self._lock:
                task.ready_at = task.ready_at or time.monotonic()
            payload["result"] = {"sample": f"{self.delivery.url}/results/{task.id}.jpg?sig=secret-signature",
                                 "seed": task.body.get("seed", 0), "prompt": task.body.get("prompt")}
        elif status in ("Error", "Request Moderated", "Content Moderated"):
            with self._lock:
                task.ready_at = time.monotonic()
        return Response.json(payload)

    def _status_of(self, task: _Task, index: int) -> tuple[str, float | None]:
        plan = task.plan
        if plan.latency is not None:
            elapsed = time.monotonic() - task.created
            if elapsed >= plan.latency:
                return "Ready", 1.0
            fraction = elapsed / plan.latency
            return "Pending", fraction * 100 if plan.progress_as_percent else fraction
        status = plan.statuses[min(index, len(plan.statuses) - 1)]
        fraction = min(1.0, (index + 1) / len(plan.statuses))
        return status, fraction * 100 if plan.progress_as_percent else fraction

    # delivery ----------------------------------------------------------------------------
    def result_bytes(self, task_id: str) -> bytes:
        """The image a task's download delivers (for faults built from it: truncation, trickling)."""
        task = self.tasks[task_id]
        return render_result(task.width, task.height, int(task.body.get("seed") or 0),
                             task.body.get("output_format") or "jpeg")

    def _handle_delivery(self, request: Request) -> Response:
        task_id = request.path.removeprefix("/results/").split(".")[0]
        task = self.tasks.get(task_id)
        if task is None or task.ready_at is None:
            return Response(404, b"not found")
        if self.delivery_script:
            return self.delivery_script.popleft()
        if time.monotonic() - task.ready_at > self.result_expiry:
            return Response(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                            {"Content-Type": "application/xml"})
        data = self.result_bytes(task.id)
        # The URL says .jpg and the header says octet-stream: clients must sniff the bytes.
        return Response(200, data, {"Content-Type": "application/octet-stream"})


def _forbidden() -> Response:
    return Response.json({"detail": "Not authenticated"}, 403)


def _validate(body: Any) -> list[dict[str, Any]]:
    """The spec's own checks, answered in FastAPI's HTTPValidationError shape."""
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        return [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}]
    problems = []
    for name, (low, high) in FIELD_RANGES.items():
        value = body.get(name)
        if value is not None and not low <= value <= high:
            problems.append({"loc": ["body", name], "msg": f"Input should be between {low} and {high}",
                             "type": "value_error"})
    for name in ("width", "height"):
        value = body.get(name)
        if value is not None and value != 0 and value < 64:
            problems.append({"loc": ["body", name], "msg": "Input should be greater than or equal to 64",
                             "type": "greater_than_equal"})
    if body.get("output_format") not in (None, "jpeg", "png", "webp"):
        problems.append({"loc": ["body", "output_format"], "msg": "Input should be 'jpeg', 'png' or 'webp'",
                         "type": "enum"})
    return problems


def _input_sizes(body: dict[str, Any]) -> list[tuple[int, int]]:
    fields = ["input_image"] + [f"input_image_{index}" for index in range(2, 9)]
    return [encoded_image_size(body[name]) for name in fields if body.get(name)]


register(*(
    StandIn(
        provider=name, start=FakeBfl, plan=TaskPlan,
        failed=lambda reason: TaskPlan(statuses=["Pending", "Error"], details={"error": reason}),
        moderated=lambda: TaskPlan(statuses=["Content Moderated"], details={"Moderation Reasons": ["NSFW"]}),
        running=lambda: TaskPlan(statuses=["Pending"]),
    )
    for name in ("bfl", "bfl-eu", "bfl-us")  # one API on three hosts: the URL override points each here
))
