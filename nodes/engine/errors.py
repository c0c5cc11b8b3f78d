"""Errors a user can act on.

Every message says what failed and what to do next. None of them ever contains an API key:
messages are built from our own words and from provider responses, never from request headers,
and any key a provider echoes back in its response is redacted when the error is made.
"""

from __future__ import annotations

from .redaction import redact


class FluxFlexError(Exception):
    """Base class: the message is meant to be shown to the user as it is (keys redacted)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


class InvalidRequestError(FluxFlexError, ValueError):
    """A setting is outside what the provider accepts; raised before anything is sent."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field} = {value!r} is not allowed: {allowed}.")


class MissingApiKeyError(FluxFlexError):
    """No key was configured for the chosen provider."""

    def __init__(self, provider: str, env_var: str) -> None:
        self.provider = provider
        self.env_var = env_var
        super().__init__(
            f"No API key for {provider}: set the environment variable {env_var} "
            "or store a key in ComfyUI's settings (FLUX.2 Flex)."
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


class UnsafeUrlError(FluxFlexError):
    """A URL the provider returned is not one the key may be sent to."""


class ModeratedError(FluxFlexError):
    """The prompt, an input image or the output was refused by the provider's moderation."""

    def __init__(self, message: str, *, stage: str, reasons: tuple[str, ...], task_id: str | None) -> None:
        self.stage = stage
        self.reasons = tuple(redact(reason) for reason in reasons)  # provider text, like the message
        self.task_id = task_id
        super().__init__(message)


class GenerationFailedError(FluxFlexError):
    """The provider accepted the task and then reported that it failed."""


class ResultExpiredError(FluxFlexError):
    """The signed result URL expired (BFL's last 10 minutes) or the task is gone."""


class ResultTooLargeError(FluxFlexError):
    """A download or decoded image exceeds the pack's safety limits."""


class ImageDecodeError(FluxFlexError):
    """The downloaded bytes are not an image the pack can read."""


class GenerationTimeoutError(FluxFlexError):
    """The task did not finish within the configured time; it was not resubmitted."""


class CancelledError(FluxFlexError):
    """The user cancelled; a task already submitted is reported, never resubmitted."""

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        self.task_id = task_id
        super().__init__(message)
