"""fal.ai: fal-ai/flux-2-flex (text to image) and fal-ai/flux-2-flex/edit on fal's queue.

Contract: fal's model page and API schema (https://fal.ai/models/fal-ai/flux-2-flex/api) and its
queue documentation (https://docs.fal.ai/model-apis/model-endpoints/queue). A submit returns the
request's status_url and response_url; the poll reads the status and, once COMPLETED, reads the
result JSON from response_url (an extra, free request to fal's API with the key) and hands the
image's CDN URL (fal.media, never given the key) to the download. The returned URLs are used as
they are: fal's status and result paths drop the /edit of the submit path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lazy_httpx import httpx
from .. import errors
from ..request import STEPS, FlexRequest
from .base import Provider, ProviderLimits
from .fields import as_int
from .http_errors import format_detail, provider_detail
from .tasks import PollUpdate, SubmittedTask

if TYPE_CHECKING:
    from .upload_body import ImageEncoder

TEXT_TO_IMAGE_PATH = "/fal-ai/flux-2-flex"
EDIT_PATH = TEXT_TO_IMAGE_PATH + "/edit"  # requires image_urls
STEPS_MIN = 2  # fal's num_inference_steps range is 2-50
SAFETY_TOLERANCE_MIN = 1  # fal takes the strings "1" to "5"; BFL's 0 does not exist there
MAX_REFERENCES = 10  # not stated on fal's model page; third-party listings of the edit endpoint say 10
OUTPUT_FORMATS = {"png": "png", "jpeg": "jpeg", "webp": "png"}  # fal has no webp
CONTENT_POLICY_ERROR = "content_policy_violation"  # fal's error type for moderation refusals
ACCOUNT_LOCKED = "User is locked"  # fal answers 403 with this when the balance is exhausted
RETRYABLE_HEADER = "X-Fal-Retryable"
# fal documents IN_QUEUE, IN_PROGRESS and COMPLETED; these end a request without a result where
# they occur (a request cancelled through its cancel_url, a failed one), so they are not polled on.
ENDED_STATUSES = frozenset({"FAILED", "CANCELED", "CANCELLED", "ERROR"})

# References go inline as data URIs, which fal accepts wherever it takes an image URL, instead of
# through fal's storage upload: that would be another request storing the user's images before the
# paid one. fal's page for this model (https://fal.ai/models/fal-ai/flux-2-flex/edit/api) names no
# accepted image formats, so only PNG is sent.


class FalProvider(Provider):
    name = "fal"
    label = "fal"
    key_env_var = "FAL_KEY"
    key_header, key_prefix = "Authorization", "Key "
    default_base_url = "https://queue.fal.run"
    trusted_domain = "fal.run"  # queue.fal.run answers status and results; images are on fal.media
    result_domains = ("fal.media", "fal.run", "fal.ai")
    limits = ProviderLimits(max_images=MAX_REFERENCES)
    data_uri_images = True

    def validate(self, request: FlexRequest) -> FlexRequest:
        """fal runs 2-50 steps: 1 step cannot be honoured, and rounding it up would change the image."""
        super().validate(request)
        if request.steps < STEPS_MIN:
            raise errors.InvalidRequestError(
                STEPS.name, request.steps,
                f"from {STEPS_MIN} to {STEPS.maximum:g} on fal (its num_inference_steps range)", provider=self.name,
            )
        return request

    def notes_for(self, request: FlexRequest) -> tuple[str, ...]:
        notes = []
        if request.safety_tolerance < SAFETY_TOLERANCE_MIN:
            notes.append(
                f"safety_tolerance {request.safety_tolerance} does not exist on fal (range {SAFETY_TOLERANCE_MIN}-5): "
                f"sent {SAFETY_TOLERANCE_MIN}, the strictest it offers"
            )
        if OUTPUT_FORMATS[request.output_format] != request.output_format:
            notes.append(f"fal cannot encode {request.output_format}: the image comes back as png")
        return tuple(notes)

    def build_body(self, request: FlexRequest, encode: ImageEncoder) -> dict[str, Any]:
        """fal's input; without an explicit size the edit endpoint follows the input image ("auto")."""
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "image_size": "auto" if request.width is None else {"width": request.width, "height": request.height},
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance,
            "safety_tolerance": str(max(request.safety_tolerance, SAFETY_TOLERANCE_MIN)),
            "enable_prompt_expansion": request.prompt_upsampling,
            "output_format": OUTPUT_FORMATS[request.output_format],
            "sync_mode": False,  # a CDN URL, not a data URI inside the result JSON
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.images:
            body["image_urls"] = [encode(image) for image in request.images]
        return body

    def submit_url(self, request: FlexRequest) -> str:
        return self.base_url + (EDIT_PATH if request.images else TEXT_TO_IMAGE_PATH)

    def submit(self, request: FlexRequest) -> SubmittedTask:
        body = self.read_json(self.post_submit(request), stage="submit")
        request_id, status_url, response_url = body.get("request_id"), body.get("status_url"), body.get("response_url")
        if not request_id or not status_url or not response_url:
            raise self.unknown_outcome("request id, status URL or response URL")
        return SubmittedTask(self.name, str(request_id), str(status_url), extra={"response_url": str(response_url)})

    def poll(self, task: SubmittedTask, *, polls_so_far: int = 0) -> PollUpdate:
        """Read the status; once COMPLETED, read the result (or the request's error) from response_url."""
        status_body = self.read_json(self.get_poll(task.poll_url, task), stage="poll")
        status = str(status_body.get("status") or "IN_QUEUE")
        if status == "IN_QUEUE":
            position = status_body.get("queue_position")
            where = f" (position {position})" if position is not None else ""
            return PollUpdate(done=False, status="in queue" + where)
        if status in ENDED_STATUSES:
            detail = format_detail(status_body.get("error") or "no details given")
            raise errors.GenerationFailedError(
                f"{self.label} request {task.task_id} ended as {status}: {detail}. It was not resubmitted.",
                provider=self.name, task_id=task.task_id, billed=errors.MAYBE_BILLED)
        if status != "COMPLETED":
            return PollUpdate(done=False, status="in progress" if status == "IN_PROGRESS" else status)
        if status_body.get("error"):
            raise request_failed(self, format_detail(status_body["error"]), status_body.get("error_type"),
                                 task_id=task.task_id)
        response = self.get_poll(task.extra["response_url"], task)
        return interpret_result(self.read_json(response, stage="poll"), task, self.label)

    def raise_for_refusal(self, response: httpx.Response, *, stage: str, task_id: str | None = None) -> None:
        """fal's own error shapes first: a locked account, a content-policy refusal, a final model error."""
        if response.status_code < 400:
            return
        detail = provider_detail(response)
        if response.status_code == 403 and ACCOUNT_LOCKED in detail:
            raise errors.InsufficientCreditsError(
                f"{self.label} has locked the account (HTTP 403): {detail}. The key is valid: top up at "
                "fal.ai/dashboard/billing (or ask fal support to lift an admin lock), then run again.",
                provider=self.name, status=403, task_id=task_id, billed=errors.NOT_BILLED,
            )
        if CONTENT_POLICY_ERROR in _error_types(response):
            raise request_failed(self, detail, CONTENT_POLICY_ERROR, task_id=task_id, status=response.status_code)
        # fal's structured model errors carry X-Fal-Retryable; a gateway's 502 page does not and is
        # worth polling past. A model error on the response_url is final: polling again repeats it.
        retryable = response.headers.get(RETRYABLE_HEADER)
        if stage == "poll" and response.status_code >= 500 and retryable is not None:
            again = "fal marks it retryable, so running it again may work" if retryable.lower() == "true" else (
                "running the same request again is unlikely to help")
            raise errors.GenerationFailedError(
                f"{self.label} request failed (HTTP {response.status_code}): {detail or 'no details given'}. "
                f"fal does not bill requests that fail with a server error; {again}.",
                provider=self.name, status=response.status_code, task_id=task_id, billed=errors.NOT_BILLED,
            )
        super().raise_for_refusal(response, stage=stage, task_id=task_id)


def interpret_result(result: dict[str, Any], task: SubmittedTask, label: str) -> PollUpdate:
    """The finished request's JSON: {"images": [{"url", ...}], "seed", "has_nsfw_concepts"?}."""
    if _flagged(result.get("has_nsfw_concepts")):
        raise errors.ModeratedError(
            f"{label}'s safety checker withheld the image of request {task.task_id}. Try a different seed or "
            "adjust the prompt.",
            stage="content", reasons=("safety checker",), task_id=task.task_id, provider=task.provider,
            billed=errors.MAYBE_BILLED,
        )
    images = result.get("images")
    first = images[0] if isinstance(images, list) and images and isinstance(images[0], dict) else {}
    url = first.get("url")
    if not isinstance(url, str) or not url:
        raise errors.GenerationFailedError(f"{label} request {task.task_id} completed but sent no image URL.",
                                           provider=task.provider, task_id=task.task_id, billed=errors.MAYBE_BILLED)
    return PollUpdate(done=True, status="COMPLETED", progress=1.0, result_url=url, seed=as_int(result.get("seed")))


def request_failed(provider: Provider, message: str, error_type: Any, *, task_id: str | None,
                   status: int | None = None) -> errors.FluxFlexError:
    """A request fal finished with an error; a content-policy refusal is moderation, not a fault."""
    message = message or "no details given"
    billed = errors.MAYBE_BILLED if task_id else errors.NOT_BILLED  # refused on submit: nothing was created
    facts = dict(provider=provider.name, status=status, task_id=task_id, billed=billed)
    if error_type == CONTENT_POLICY_ERROR:
        return errors.ModeratedError(
            f"{provider.label} refused the request under its content policy: {message}. Change the prompt or input "
            "images.", stage="request", reasons=(message,), **facts,
        )
    kind = f" ({error_type})" if error_type else ""
    named = f" {task_id}" if task_id else ""
    return errors.GenerationFailedError(f"{provider.label} request{named} failed{kind}: {message}", **facts)


def _error_types(response: httpx.Response) -> set[str]:
    """The `type` of each item in fal's {"detail": [{loc, msg, type}]} body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return set()
    return {str(item.get("type")) for item in detail if isinstance(item, dict)} if isinstance(detail, list) else set()


def _flagged(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and value[0] is True
