"""Apiframe: POST /v2/images/generate with model flux-2-flex, then poll GET /v2/jobs/{jobId}.

Contract: Apiframe's v2 documentation (https://docs-v2.apiframe.ai, "Flux 2 Flex" and the Image
Generation overview). Apiframe's fluxParams mirror Replicate's schema: sizes are "custom" 256-2048
per side, references are a list of image URLs, and the job reports its cost in Apiframe credits
only when it ends.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .. import errors
from ..poll_timing import PollTiming
from ..request import MEGAPIXEL, SAFETY_TOLERANCE, FlexRequest
from .base import Provider, ProviderLimits, check_custom_size
from .fields import as_fraction, as_number
from .http_errors import format_detail
from .moderation import moderation_error
from .tasks import PollUpdate, SubmittedTask

if TYPE_CHECKING:
    from .upload_body import ImageEncoder

MODEL = "flux-2-flex"
GENERATE_PATH = "/v2/images/generate"
JOBS_PATH = "/v2/jobs/"
MAX_PROMPT_CHARS = 2000
CUSTOM_SIZE_RANGE = (256, 2048)  # fluxParams.width/height, used only with aspect_ratio "custom"
REPLICATE_SIZE_MULTIPLE = 32  # Replicate's schema, which fluxParams mirror, rounds custom sizes to this
RESOLUTIONS_MP = (0.5, 1.0, 2.0, 4.0)  # fluxParams.resolution values ("1 MP"); up to 4 MP
MAX_REFERENCES = 10
OUTPUT_FORMATS = {"png": "png", "jpeg": "jpg", "webp": "webp"}

# fluxParams.input_images takes image URLs and the pack has nowhere to host the user's images, so
# each travels inside the body as a data URI (the form Replicate's schema, which Apiframe relays,
# accepts for URL inputs). Apiframe's flex page names no accepted image formats, so only PNG is sent.


class ApiframeProvider(Provider):
    name = "apiframe"
    label = "Apiframe"
    key_env_var = "APIFRAME_API_KEY"
    key_header, key_prefix = "X-API-Key", ""
    default_base_url = "https://api.apiframe.ai"
    trusted_domain = "apiframe.ai"
    result_domains = ("apiframe.ai",)  # its docs name no other delivery host
    limits = ProviderLimits(max_images=MAX_REFERENCES)
    poll_timing = PollTiming(reports_progress=True)  # the job's `progress`, 0-100
    data_uri_images = True

    def validate(self, request: FlexRequest) -> FlexRequest:
        """Apiframe's prompt is at most 2000 characters and its custom size 256-2048 per side."""
        super().validate(request)
        if len(request.prompt) > MAX_PROMPT_CHARS:
            raise errors.InvalidRequestError(
                "prompt", f"{len(request.prompt)} characters", f"at most {MAX_PROMPT_CHARS} characters on Apiframe",
                provider=self.name,
            )
        check_custom_size(request, *CUSTOM_SIZE_RANGE, self)
        return request

    def notes_for(self, request: FlexRequest) -> tuple[str, ...]:
        notes = []
        if request.safety_tolerance != SAFETY_TOLERANCE.default:
            notes.append(
                f"safety_tolerance {request.safety_tolerance} cannot be set on Apiframe (its flex parameters "
                "have none): Apiframe's own moderation level applies"
            )
        if request.width is None:
            resolution = _nearest_resolution(request)
            width, height = request.output_size()
            notes.append(
                f"Apiframe cannot follow the input image's exact size ({width}x{height}): the output keeps its "
                f"aspect ratio at {resolution}, the nearest of Apiframe's resolutions"
            )
        elif request.width % REPLICATE_SIZE_MULTIPLE or request.height % REPLICATE_SIZE_MULTIPLE:
            notes.append(
                f"{request.width}x{request.height} is not a multiple of {REPLICATE_SIZE_MULTIPLE} on each side: "
                f"Apiframe's model rounds each side to a multiple of {REPLICATE_SIZE_MULTIPLE}"
            )
        return tuple(notes)

    def build_body(self, request: FlexRequest, encode: ImageEncoder) -> dict[str, Any]:
        """{"prompt", "model", "fluxParams"}: an explicit size is "custom", else the first image's aspect."""
        params: dict[str, Any] = {
            "steps": request.steps,
            "guidance": request.guidance,
            "output_format": OUTPUT_FORMATS[request.output_format],
            "prompt_upsampling": request.prompt_upsampling,
        }
        if request.width is not None:
            params.update(aspect_ratio="custom", width=request.width, height=request.height)
        else:
            params.update(aspect_ratio="match_input_image", resolution=_nearest_resolution(request))
        if request.seed is not None:
            params["seed"] = request.seed
        if request.images:
            params["input_images"] = [encode(image) for image in request.images]
        return {"prompt": request.prompt, "model": MODEL, "fluxParams": params}

    def submit_url(self, request: FlexRequest) -> str:
        return self.base_url + GENERATE_PATH

    def submit(self, request: FlexRequest) -> SubmittedTask:
        """One key per call: should the request ever be replayed on the way, Apiframe bills it once."""
        response = self.post_submit(request, headers={"Idempotency-Key": str(uuid.uuid4())})
        job = self.read_json(response, stage="submit")
        job_id = job.get("jobId")
        if not isinstance(job_id, str) or not job_id:
            raise self.unknown_outcome("job id")
        return SubmittedTask(provider=self.name, task_id=job_id, poll_url=self.base_url + JOBS_PATH + quote(job_id))

    def poll(self, task: SubmittedTask, *, polls_so_far: int = 0) -> PollUpdate:
        response = self.get_poll(task.poll_url, task)
        return interpret_job(self.read_json(response, stage="poll"), task, self.label)


def interpret_job(job: dict[str, Any], task: SubmittedTask, label: str) -> PollUpdate:
    """Map an Apiframe job (QUEUED -> PROCESSING -> COMPLETED | FAILED) to a PollUpdate or error."""
    status = str(job.get("status") or "QUEUED")
    cost = as_number(job.get("creditCost"))
    facts = dict(provider=task.provider, task_id=task.task_id, billed=errors.REFUNDED)
    if status == "COMPLETED":
        url = _result_url(job.get("result"))
        if url is None:
            raise errors.GenerationFailedError(f"{label} reported job {task.task_id} completed but sent no image URL.",
                                               **{**facts, "billed": errors.BILLED})
        return PollUpdate(done=True, status=status, progress=1.0, result_url=url, reported_cost=cost)
    if status == "FAILED":
        message = format_detail(job.get("error") or "no details given")
        moderated = moderation_error(message, label, task, extra=" Apiframe refunds the credits of failed jobs.",
                                     billed=errors.REFUNDED)
        if moderated:
            raise moderated
        raise errors.GenerationFailedError(
            f"{label} job {task.task_id} failed: {message}. Apiframe refunds the credits of failed jobs; "
            "it was not resubmitted.", **facts
        )
    return PollUpdate(done=False, status=status, progress=as_fraction(job.get("progress"), percent=True))


def _result_url(result: Any) -> str | None:
    """Apiframe's docs show the result as a URL string in one version, {"images": [...]} in another."""
    if isinstance(result, dict):
        images = result.get("images")
        result = images[0] if isinstance(images, list) and images else None
    if isinstance(result, dict):
        result = result.get("url")
    return result if isinstance(result, str) and result else None


def _nearest_resolution(request: FlexRequest) -> str:
    """The fluxParams.resolution closest to the size the request would have (the first image's)."""
    width, height = request.output_size()
    megapixels = width * height / MEGAPIXEL
    return f"{min(RESOLUTIONS_MP, key=lambda mp: abs(mp - megapixels)):g} MP"
