"""Black Forest Labs' own API: POST /v1/flux-2-flex, then poll the returned polling_url.

Contract: BFL's API reference (https://docs.bfl.ai/api-reference, schema Flux2FlexInputs at
https://api.bfl.ai/openapi.json) and its guide to polling and regional endpoints
(https://docs.bfl.ai/quick_start/generating_images). Three regional endpoints share this class:
global (failover), EU-only and US-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import errors
from ..poll_timing import PollTiming
from ..request import FlexRequest
from .base import Provider, ProviderLimits
from .fields import as_fraction, as_int, as_number

if TYPE_CHECKING:
    from .tasks import PollUpdate, SubmittedTask
    from .upload_body import ImageEncoder

ENDPOINT_PATH = "/v1/flux-2-flex"
IN_PROGRESS_STATUSES = frozenset({"Pending", "Generating", "Reasoning", "Queued", "Processing"})
# "Task not found" right after a submit can be replication lag between BFL's clusters.
TASK_NOT_FOUND_GRACE_POLLS = 3
# BFL's schema says only "Base64 encoded image or URL" for input_image; its image-editing guide
# (https://docs.bfl.ai/flux_2/flux2_image_editing) sends JPEG files. WebP is documented nowhere.
UPLOAD_FORMATS = ("png", "jpeg")
# BFL's two moderation statuses: status -> (stage, what happened, what to do).
MODERATION_STATUSES = {
    "Request Moderated": ("request", "refused the request",
                          "Change the prompt or input images; the same request will be refused again."),
    "Content Moderated": ("content", "withheld the generated image", "Try a different seed or adjust the prompt."),
}


def input_image_field(index: int) -> str:
    """BFL names the slots input_image, input_image_2 ... input_image_8."""
    return "input_image" if index == 0 else f"input_image_{index + 1}"


class BflProvider(Provider):
    name = "bfl"
    label = "BFL"
    key_env_var = "BFL_API_KEY"
    key_header, key_prefix = "x-key", ""
    default_base_url = "https://api.bfl.ai"
    trusted_domain = "bfl.ai"
    result_domains = ("bfl.ai",)  # signed links on delivery-eu1.bfl.ai and the like
    endpoint_path = ENDPOINT_PATH  # relays of BFL's API (CometAPI) serve the same body under their own path
    poll_timing = PollTiming(reports_progress=True)  # get_result's `progress` (ResultResponse in the OpenAPI)
    limits = ProviderLimits(upload_formats=UPLOAD_FORMATS)

    def build_body(self, request: FlexRequest, encode: ImageEncoder) -> dict[str, Any]:
        """The JSON body BFL expects; images as raw base64, as BFL's own examples send them."""
        return flex_body(request, encode)

    def submit_url(self, request: FlexRequest) -> str:
        return self.base_url + self.endpoint_path

    def polling_url(self, task_id: str, submit_answer: dict[str, Any]) -> str | None:
        """BFL's returned polling_url, never a rebuilt one: it names the cluster that took the task."""
        returned = submit_answer.get("polling_url")
        return str(returned) if returned else None

    def submit(self, request: FlexRequest) -> SubmittedTask:
        body = self.read_json(self.post_submit(request), stage="submit")
        task_id = body.get("id")
        polling_url = self.polling_url(str(task_id), body) if task_id else None
        if not task_id or not polling_url:
            raise self.unknown_outcome("task id or polling URL")
        from .tasks import SubmittedTask  # a submit's: a cache hit loads this class without it

        return SubmittedTask(
            provider=self.name,
            task_id=str(task_id),
            poll_url=str(polling_url),
            reported_cost=as_number(body.get("cost")),
            input_mp=as_number(body.get("input_mp")),
            output_mp=as_number(body.get("output_mp")),
        )

    def poll(self, task: SubmittedTask, *, polls_so_far: int = 0) -> PollUpdate:
        response = self.get_poll(task.poll_url, task)
        body = self.read_json(response, stage="poll")
        return interpret_bfl_status(body, task, polls_so_far, self.label)


def flex_body(request: FlexRequest, encode: ImageEncoder, *, output_format: str | None = None) -> dict[str, Any]:
    """BFL's Flux2FlexInputs, which its relays take too (Microsoft Foundry's BFL route);
    `output_format` replaces the request's where a relay offers fewer formats."""
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "steps": request.steps,
        "guidance": request.guidance,
        "safety_tolerance": request.safety_tolerance,
        "output_format": output_format or request.output_format,
        "prompt_upsampling": request.prompt_upsampling,
    }
    if request.width is not None:
        body["width"], body["height"] = request.width, request.height
    if request.seed is not None:
        body["seed"] = request.seed
    for index, image in enumerate(request.images):
        body[input_image_field(index)] = encode(image)
    return body


def interpret_bfl_status(body: dict[str, Any], task: SubmittedTask, polls_so_far: int, label: str) -> PollUpdate:
    """Map a BFL-shaped get_result answer (also CometAPI's passthrough) to a PollUpdate or error."""
    from .tasks import PollUpdate  # a poll's: a cache hit loads this module without it

    status = str(body.get("status", ""))
    facts = dict(provider=task.provider, task_id=task.task_id, billed=errors.MAYBE_BILLED)
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    result = body.get("result") if isinstance(body.get("result"), dict) else {}
    if status == "Ready":
        sample = result.get("sample")
        if not isinstance(sample, str) or not sample:
            raise errors.GenerationFailedError(f"{label} reported task {task.task_id} ready but sent no image URL.",
                                               **facts)
        return PollUpdate(done=True, status=status, progress=1.0, result_url=sample, seed=as_int(result.get("seed")))
    if status == "Task not found":
        if polls_so_far < TASK_NOT_FOUND_GRACE_POLLS:
            raise errors.TaskNotVisibleYet("task not visible yet")
        raise errors.ResultExpiredError(
            f"{label} no longer knows task {task.task_id} (Task not found): it expired or was never stored. "
            "It was not resubmitted.", **facts
        )
    if status in MODERATION_STATUSES:
        stage, what, advice = MODERATION_STATUSES[status]
        reasons = _reasons(details)
        raise errors.ModeratedError(f"{label} {what} in moderation{_because(reasons)}. {advice}",
                                    stage=stage, reasons=reasons, **facts)
    if status in ("Error", "Failed"):
        message = details.get("error") or result.get("error") or body.get("error") or "no details given"
        raise errors.GenerationFailedError(f"{label} task {task.task_id} failed: {message}", **facts)
    # Pending, Generating, Reasoning and statuses added after this was written: still running.
    # BFL sends progress as a fraction or as a percentage.
    return PollUpdate(done=False, status=status or "Pending", progress=as_fraction(body.get("progress"), percent=None))


def _reasons(details: dict[str, Any]) -> tuple[str, ...]:
    raw = details.get("Moderation Reasons") or details.get("moderation_reasons") or ()
    if isinstance(raw, str):
        return (raw,)
    return tuple(str(reason) for reason in raw) if isinstance(raw, (list, tuple)) else ()


def _because(reasons: tuple[str, ...]) -> str:
    return f" ({', '.join(reasons)})" if reasons else ""


class BflEuProvider(BflProvider):
    name = "bfl-eu"
    label = "BFL (EU)"
    key_name = "bfl"
    default_base_url = "https://api.eu.bfl.ai"


class BflUsProvider(BflProvider):
    name = "bfl-us"
    label = "BFL (US)"
    key_name = "bfl"
    default_base_url = "https://api.us.bfl.ai"
