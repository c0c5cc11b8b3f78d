"""Errors a user can act on, with the facts a program needs beside the words.

Every message says what failed and what to do next. None of them ever contains an API key:
messages are built from our own words and from provider responses, never from request headers,
and any key a provider echoes back in its response is redacted when the error is made.
Beside the message each error carries structured fields (`provider`, HTTP `status`, `task_id`,
what was `billed`), so callers such as a paid-task journal, and the tests, read facts rather
than parse text.
"""

from __future__ import annotations

from .redaction import redact

# The values of `billed` (a provider's reported cost, when one is known, is said in the message).
NOT_BILLED = "no"  # nothing was created: validation, a refused submit, a missing key
BILLED = "yes"  # a task exists and was (or will be) charged
MAYBE_BILLED = "maybe"  # a submit whose outcome is unknown, or a task whose charge the provider does not state
REFUNDED = "refunded"  # the provider says it returns the charge of failed tasks (Apiframe)


class FluxFlexError(Exception):
    """Base class: the message is meant to be shown to the user as it is.

    `provider` is the provider's name (bfl, fal, ...), `status` the HTTP status that caused the
    error, `task_id` the provider's id of a task that exists (and may be billed), and `billed`
    what is known about payment: one of NOT_BILLED, BILLED, MAYBE_BILLED, REFUNDED, or None when
    the error says nothing about money.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        task_id: str | None = None,
        billed: str | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.task_id = task_id
        self.billed = billed
        super().__init__(redact(message))


class InvalidRequestError(FluxFlexError, ValueError):
    """A setting is outside what the provider accepts; raised before anything is sent."""

    def __init__(self, field: str, value: object, allowed: str, *, provider: str | None = None) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field} = {value!r} is not allowed: {allowed}.", provider=provider, billed=NOT_BILLED)


class MissingModelError(InvalidRequestError):
    """A model folder the workflow names is not on this machine. Nothing is downloaded at run time,
    so the message says where the folder goes and, for a published model, where it comes from."""

    def __init__(self, field: str, folder: str, where: str, *, repository: str | None = None) -> None:
        self.field, self.value, self.allowed = field, folder, f"the name of a folder in {where}"
        fetch = (f"Download it from https://huggingface.co/{repository} into {where}/{folder} (for example: hf "
                 f"download {repository} --local-dir {where}/{folder})" if repository
                 else f"Put that FLUX.2 [dev] or [klein] folder, in diffusers format, into {where}")
        FluxFlexError.__init__(self, f"{field} {folder!r} is not in {where}. {fetch}, or pick a model folder you "
                               "have.", billed=NOT_BILLED)


class MissingApiKeyError(FluxFlexError):
    """No key (or other per-account setting, such as Foundry's endpoint) was configured."""

    def __init__(self, provider: str, env_var: str, *, what: str = "API key") -> None:
        self.env_var = env_var
        super().__init__(
            f"No {what} for {provider}: set the environment variable {env_var} "
            "or store it in ComfyUI's settings (FLUX.2 Flex).",
            provider=provider, billed=NOT_BILLED,
        )


class AuthenticationError(FluxFlexError):
    """401/403: the key is wrong, inactive or lacks access."""


class InsufficientCreditsError(FluxFlexError):
    """402: the account has no credits or no payment method."""


class ProviderRejectedError(FluxFlexError):
    """422 or 400: the provider refused the request body; nothing was created."""


class RateLimitedError(FluxFlexError):
    """429 that did not clear in time: too many tasks active on the account."""


class ProviderUnavailableError(FluxFlexError):
    """The provider could not be reached or kept failing; says whether a task may exist."""


class SubmitOutcomeUnknown(ProviderUnavailableError):
    """The submit may have reached the provider: resubmitting could bill twice."""


class TransientError(Exception):
    """A failure where trying the same call again is safe (a poll or an unsent submit).

    Never shown to a user as it is: the runner retries it, or turns it into a FluxFlexError
    once waiting is over. `retry_after` is the provider's Retry-After in seconds.
    """

    def __init__(self, reason: str, *, retry_after: float | None = None, unreachable: bool = False,
                 status: int | None = None) -> None:
        self.reason = reason
        self.retry_after = retry_after
        self.unreachable = unreachable  # the provider could not be reached at all
        self.status = status
        super().__init__(reason)


class TaskNotVisibleYet(TransientError):
    """The provider does not show a task it just accepted ("Task not found" for a moment after a
    submit): an answer that the task is not ready at the moment it was asked, not a failure."""


class UnsafeUrlError(FluxFlexError):
    """A URL the provider returned is not one the key may be sent to."""


class ModeratedError(FluxFlexError):
    """The prompt, an input image or the output was refused by the provider's moderation."""

    def __init__(self, message: str, *, stage: str, reasons: tuple[str, ...], task_id: str | None,
                 provider: str | None = None, status: int | None = None, billed: str | None = None) -> None:
        self.stage = stage
        self.reasons = tuple(redact(reason) for reason in reasons)  # provider text, like the message
        super().__init__(message, provider=provider, status=status, task_id=task_id, billed=billed)


class GenerationFailedError(FluxFlexError):
    """The provider accepted the task and then reported that it failed."""


class ResultExpiredError(FluxFlexError):
    """The provider says the task or its result is gone: it cannot be fetched again."""


class ResultLinkError(ResultExpiredError):
    """A result link answered 401/403/404/410. That is the link's word, not the provider's: the
    task may still hand out a fresh link, so the task stays recoverable."""


class PaidRequestCapError(FluxFlexError):
    """A run would send more paid requests than the configured cap; nothing was sent."""


class ResultTooLargeError(FluxFlexError):
    """A download or decoded image exceeds the pack's safety limits."""


class ImageDecodeError(FluxFlexError):
    """The downloaded bytes are not an image the pack can read."""


class GenerationTimeoutError(FluxFlexError):
    """The task did not finish within the configured time; it was not resubmitted."""


class CancelledError(FluxFlexError):
    """The user cancelled; a task already submitted is reported, never resubmitted."""
