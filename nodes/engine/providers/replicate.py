"""Replicate: black-forest-labs/flux-2-flex as a prediction, answered at once or polled at urls.get.

Contract: the model's API page (https://replicate.com/black-forest-labs/flux-2-flex/api) and
Replicate's HTTP API reference (https://replicate.com/docs/reference/http). The submit
asks Replicate to hold the response a few seconds (`Prefer: wait=N`), so a fast prediction comes
back finished and needs no poll; a slower one is polled at the `urls.get` Replicate returned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import errors
from ..request import FlexRequest
from .base import Provider, ProviderLimits, check_custom_size
from .moderation import moderation_error
from .tasks import PollUpdate, SubmittedTask

if TYPE_CHECKING:
    from .upload_body import ImageEncoder

MODEL = "black-forest-labs/flux-2-flex"
PREDICTIONS_PATH = f"/v1/models/{MODEL}/predictions"
# Replicate holds a `Prefer: wait` submit open up to 60 s. A short hold returns quick results in
# the submit answer, while keeping the submit (which a cancel cannot interrupt) short.
SUBMIT_WAIT_SECONDS = 5
CUSTOM_SIZE_RANGE = (256, 2048)  # Replicate's width/height bounds when aspect_ratio is "custom"
SAFETY_TOLERANCE_MIN = 1  # Replicate's range is 1-5; BFL's 0 does not exist there
MAX_REFERENCES = 10
OUTPUT_FORMATS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
# "aborted": the prediction reached its deadline before it started running
# (https://replicate.com/docs/topics/predictions/lifecycle); it will never produce an image.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})

# References travel inside the JSON body as data URIs rather than through Replicate's Files API:
# an upload would be a separate request that stores the user's images on their account and adds a
# failure point before the one paid call. The model's schema takes jpeg, png, gif and webp for
# input_images (https://replicate.com/black-forest-labs/flux-2-flex/api). Replicate recommends
# data URIs under about 1 MB: a 4 MP photo as PNG is several MB, so jpeg is worth choosing there.
UPLOAD_FORMATS = ("png", "jpeg", "webp")


class ReplicateProvider(Provider):
    name = "replicate"
    label = "Replicate"
    key_env_var = "REPLICATE_API_TOKEN"
    key_header, key_prefix = "Authorization", "Bearer "
    default_base_url = "https://api.replicate.com"
    trusted_domain = "replicate.com"  # urls.get lives on api.replicate.com; outputs on replicate.delivery
    result_domains = ("replicate.delivery", "replicate.com")
    limits = ProviderLimits(max_images=MAX_REFERENCES, upload_formats=UPLOAD_FORMATS)
    data_uri_images = True

    def validate(self, request: FlexRequest) -> FlexRequest:
        """Replicate's custom size is 256-2048 per side, narrower than BFL's 64-4096."""
        super().validate(request)
        check_custom_size(request, *CUSTOM_SIZE_RANGE, self)
        return request

    def notes_for(self, request: FlexRequest) -> tuple[str, ...]:
        if request.safety_tolerance < SAFETY_TOLERANCE_MIN:
            return (
                f"safety_tolerance {request.safety_tolerance} does not exist on Replicate (range "
                f"{SAFETY_TOLERANCE_MIN}-5): sent {SAFETY_TOLERANCE_MIN}, the strictest it offers",
            )
        return ()

    def build_body(self, request: FlexRequest, encode: ImageEncoder) -> dict[str, Any]:
        """Replicate's {"input": {...}}: an explicit size is "custom", otherwise the first image's size."""
        model_input: dict[str, Any] = {
            "prompt": request.prompt,
            "steps": request.steps,
            "guidance": request.guidance,
            "safety_tolerance": max(request.safety_tolerance, SAFETY_TOLERANCE_MIN),
            "output_format": OUTPUT_FORMATS[request.output_format],
            "prompt_upsampling": request.prompt_upsampling,
        }
        if request.width is not None:
            model_input.update(aspect_ratio="custom", width=request.width, height=request.height)
        else:
            model_input.update(aspect_ratio="match_input_image", resolution="match_input_image")
        if request.seed is not None:
            model_input["seed"] = request.seed
        if request.images:
            model_input["input_images"] = [encode(image) for image in request.images]
        return {"input": model_input}

    def submit_url(self, request: FlexRequest) -> str:
        return self.base_url + PREDICTIONS_PATH

    def submit(self, request: FlexRequest) -> SubmittedTask:
        response = self.post_submit(request, headers={"Prefer": f"wait={SUBMIT_WAIT_SECONDS}"})
        prediction = self.read_json(response, stage="submit")
        urls = prediction.get("urls") if isinstance(prediction.get("urls"), dict) else {}
        if not prediction.get("id") or not urls.get("get"):
            raise self.unknown_outcome("prediction id or status URL")
        finished = prediction if prediction.get("status") in TERMINAL_STATUSES else None
        return SubmittedTask(
            provider=self.name,
            task_id=str(prediction["id"]),
            poll_url=str(urls["get"]),
            extra={"finished_prediction": finished} if finished else {},
        )

    def holds_answer(self, task: SubmittedTask) -> bool:
        return task.extra.get("finished_prediction") is not None

    def poll(self, task: SubmittedTask, *, polls_so_far: int = 0) -> PollUpdate:
        """A prediction that finished within the submit's wait is read from the task, not fetched;
        a later poll (fetching a result again after a failed download) asks Replicate afresh."""
        prediction = task.extra.get("finished_prediction") if polls_so_far == 0 else None
        if prediction is None:
            response = self.get_poll(task.poll_url, task)
            prediction = self.read_json(response, stage="poll")
        return interpret_prediction(prediction, task, self.label)


def interpret_prediction(prediction: dict[str, Any], task: SubmittedTask, label: str) -> PollUpdate:
    """Map a Replicate prediction object to a PollUpdate, or to the pack's error."""
    status = str(prediction.get("status") or "starting")
    facts = dict(provider=task.provider, task_id=task.task_id, billed=errors.MAYBE_BILLED)
    if status == "succeeded":
        output = prediction.get("output")
        url = output[0] if isinstance(output, list) and output else output
        if not isinstance(url, str) or not url:
            raise errors.GenerationFailedError(f"{label} prediction {task.task_id} succeeded but sent no image URL.",
                                               **facts)
        return PollUpdate(done=True, status=status, progress=1.0, result_url=url)
    if status == "failed":
        message = str(prediction.get("error") or "no details given")
        moderated = moderation_error(message, label, task, billed=errors.MAYBE_BILLED)
        if moderated:
            raise moderated
        raise errors.GenerationFailedError(f"{label} prediction {task.task_id} failed: {message}", **facts)
    if status == "canceled":
        raise errors.GenerationFailedError(
            f"{label} prediction {task.task_id} was canceled (from the Replicate dashboard or API); "
            "it was not resubmitted.", **facts
        )
    if status == "aborted":
        raise errors.GenerationFailedError(
            f"{label} prediction {task.task_id} was aborted: it reached its deadline before it started running. "
            "It was not resubmitted.", **facts
        )
    return PollUpdate(done=False, status=status)  # starting, processing, or a status added later
