"""Recognising moderation in the failure text of resellers that report it only as "failed"."""

from __future__ import annotations

from .. import errors
from .tasks import SubmittedTask

# Words resellers use when their moderation refuses a task they report only as "failed".
MODERATION_MARKERS = ("nsfw", "flagged", "sensitive", "e005", "moderat", "safety", "content policy")


def moderation_error(message: str, label: str, task: SubmittedTask, *, extra: str = "",
                     billed: str | None = None) -> errors.ModeratedError | None:
    """A ModeratedError when a provider's failure text says moderation refused the task, else None."""
    if not any(marker in message.lower() for marker in MODERATION_MARKERS):
        return None
    return errors.ModeratedError(
        f"{label} refused task {task.task_id} in moderation: {message}. Adjust the prompt or input images, "
        f"or try a different seed.{extra}",
        stage="content", reasons=(message,), task_id=task.task_id, provider=task.provider, billed=billed,
    )
