"""Keys never reach a message or a log line, even when someone else puts them there.

A provider may echo the key it was sent in an error body, a library may log a request, a
traceback may quote a value. Rather than trusting every such path, every key the pack knows
(from the environment or the key store, registered as soon as it is read) is replaced by
`REDACTED` wherever text leaves the pack: in error messages (`redact`) and, through
`RedactingFilter`, in the log records of the pack's loggers and httpx's. Result URLs carry
signatures in their query string, so `url_for_log` drops it.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit, urlunsplit

from .lazy_httpx import httpx

REDACTED = "[redacted key]"
# Shorter values are not keys (providers' keys are 30+ characters) and replacing them would
# mangle ordinary text; the key store refuses keys this short.
MIN_SECRET_LENGTH = 8

_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()  # longest first, so a key containing another is replaced whole
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a key so that `redact` hides it from now on (keys are never forgotten)."""
    global _ordered
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH or value in _secrets:
        return
    with _lock:
        _secrets.add(value)
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    """The text with every registered key replaced by REDACTED."""
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def url_for_log(url: str) -> str:
    """A URL without its query string and fragment, where signatures and tokens live."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class RedactingFilter(logging.Filter):
    """Rewrites a log record whose text (message or traceback) contains a registered key,
    and strips query strings from the URLs httpx logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "httpx" and isinstance(record.args, tuple):
            record.args = tuple(url_for_log(str(arg)) if _is_url(arg) else arg for arg in record.args)
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def _is_url(value: object) -> bool:
    return isinstance(value, httpx.URL) or (isinstance(value, str) and value.startswith(("http://", "https://")))


LOGGERS = ("comfyui_flux2_flex", "httpx")
_filter = RedactingFilter()


def install_log_redaction(*handlers: logging.Handler) -> None:
    """Add the filter to the pack's and httpx's loggers, and to the given handlers (ComfyUI's
    root handlers, so lines other code logs about a failed node are cleaned too)."""
    for target in (*(logging.getLogger(name) for name in LOGGERS), *handlers):
        if _filter not in target.filters:
            target.addFilter(_filter)
