"""Providers whose answer to the submit is the finished image: one paid request, nothing to poll.

The runner's lifecycle still holds, so "never pay twice" needs no special case. The POST is the
submit: it is retried only when the connection was refused before anything was sent
(`post_submit`). A connection that breaks or times out after the request went out is an unknown
outcome (`SubmitOutcomeUnknown`): the image may have been made and billed, so it is reported and
never resent, and so is a 2xx answer without an image (`unanswered`): the journal keeps it, so
a rerun asks once before paying again. The finished answer travels inside the task, and its one
"poll" hands it over without any network traffic; an image in it that cannot be read cannot be
fetched again either, and the error says so.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from ..lazy_httpx import httpx
from .. import errors
from ..request import FlexRequest
from .base import Provider
from .tasks import PollUpdate, SubmittedTask

# Generation happens while the submit's response is awaited: FLUX.2 [flex] at 50 steps and 4 MP
# takes well over a minute on a busy deployment, longer than the shared client's 90 s read limit.
RESPONSE_TIMEOUT = dict(connect=15.0, read=300.0, write=90.0, pool=30.0)
FINISHED = "finished_update"
# Headers that name a request on the provider's side, for the report and for support tickets.
REQUEST_ID_HEADERS = ("x-generation-id", "apim-request-id", "x-request-id")


class SynchronousProvider(Provider):
    """A provider answering `POST` with the image; subclasses say how to read the answer."""

    @abstractmethod
    def finished(self, answer: dict[str, Any], response: httpx.Response) -> SubmittedTask:
        """The provider's 2xx answer as a task that is already done, or the pack's error."""

    def submit(self, request: FlexRequest) -> SubmittedTask:
        response = self.post_submit(request, timeout=httpx.Timeout(**RESPONSE_TIMEOUT))
        return self.finished(self.read_json(response, stage="submit"), response)

    def holds_answer(self, task: SubmittedTask) -> bool:
        return True

    def poll(self, task: SubmittedTask, *, polls_so_far: int = 0) -> PollUpdate:
        """The answer carried in the task. A task read back from the journal of paid tasks has none
        (the image is never written there): there is nothing on the provider's side to fetch again."""
        finished = task.extra.get(FINISHED)
        if finished is None:
            raise errors.ResultExpiredError(
                f"{self.label} answered request {task.task_id} with the image itself, so it cannot be fetched again "
                "later.", provider=self.name, task_id=task.task_id, billed=errors.BILLED,
            )
        return finished


def unanswered(provider: Provider, reference: str, why: str, where: str) -> errors.SubmitOutcomeUnknown:
    """A 2xx answer to request `reference` that carries no image: it may have been billed, so it is
    an unknown outcome (journaled; a rerun says so once before sending). `where`: where to check."""
    return errors.SubmitOutcomeUnknown(
        f"{provider.label} answered request {reference} without an image{why}. It may have been billed and was not "
        f"resent: check {where} before running again.",
        provider=provider.name, task_id=reference, billed=errors.MAYBE_BILLED,
    )


def request_id(answer: dict[str, Any], response: httpx.Response) -> str:
    """The provider's name for this request: the answer's id, a request-id header, else its time."""
    for value in (answer.get("id"), *(response.headers.get(name) for name in REQUEST_ID_HEADERS)):
        if isinstance(value, str) and value:
            return value
    return f"created {answer.get('created', 'at an unknown time')}"


def finished_task(provider: str, task_id: str, result_url: str, *, seed: int | None = None,
                  reported_cost: float | None = None) -> SubmittedTask:
    """A task whose single poll returns `result_url` (a data URI or a keyless download link)."""
    update = PollUpdate(done=True, status="finished", progress=1.0, result_url=result_url, seed=seed)
    return SubmittedTask(provider=provider, task_id=task_id, poll_url="", reported_cost=reported_cost,
                         extra={FINISHED: update})


def image_data_uri(b64_json: str, media_type: Any) -> str:
    """Base64 image bytes as a data URI, which `Provider.fetch` decodes (and rejects if garbled)."""
    kind = media_type if isinstance(media_type, str) and media_type.startswith("image/") else "image/png"
    return f"data:{kind};base64,{b64_json}"


def first_data_item(answer: dict[str, Any]) -> dict[str, Any]:
    """The first entry of an OpenAI-images answer's `data` list, or {} when there is none."""
    data = answer.get("data")
    return data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}


def delivered_image(provider: str, answer: dict[str, Any], reference: str) -> SubmittedTask | None:
    """{"data": [{"b64_json"} or {"url"}]}: the image's bytes, or a link the fetch downloads at once
    without the key; None when the answer holds neither."""
    first = first_data_item(answer)
    image, url = first.get("b64_json"), first.get("url")
    if isinstance(image, str) and image:
        return finished_task(provider, reference, image_data_uri(image, first.get("media_type")))
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return finished_task(provider, reference, url)
    return None
