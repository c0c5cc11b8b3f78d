"""One HTTP client per process, and the keyless download of results.

Reusing one httpx.Client keeps connections to the provider alive between submit, polls and
downloads (and between tasks), which removes a TLS handshake from every call. Every call has an
explicit timeout. The client never carries a key as a default header: keys are attached per
request by the provider, after its KeyScope approved the URL.
"""

from __future__ import annotations

import atexit
import threading
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

from .lazy_httpx import httpx
from .errors import BILLED, ProviderUnavailableError, ResultLinkError, ResultTooLargeError, UnsafeUrlError

DEFAULT_TIMEOUT = dict(connect=15.0, read=90.0, write=90.0, pool=30.0)
MAX_DOWNLOAD_BYTES = 128 * 1024 * 1024
DOWNLOAD_ATTEMPTS = 3
MAX_REDIRECTS = 5
_MAX_CONNECTIONS = 64  # above BFL's 24 concurrent tasks, so batches never queue on the pool

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def shared_client() -> httpx.Client:
    """The process-wide client, created on first use and closed when Python exits."""
    global _client
    with _client_lock:
        if _client is None or _client.is_closed:
            _client = httpx.Client(
                timeout=httpx.Timeout(**DEFAULT_TIMEOUT),
                limits=httpx.Limits(max_connections=_MAX_CONNECTIONS, max_keepalive_connections=_MAX_CONNECTIONS),
                follow_redirects=False,
                headers={"User-Agent": "comfyui-flux2-flex"},
            )
        return _client


def close_shared_client() -> None:
    global _client
    with _client_lock:
        if _client is not None:
            _client.close()
            _client = None


atexit.register(close_shared_client)


def describe_host(url: str) -> str:
    """Host and port only: result URLs carry signatures that must not reach logs or messages."""
    parts = urlsplit(url)
    return parts.netloc or "an unknown host"


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A Retry-After header in seconds: it may be a number of seconds or an HTTP date (RFC 9110
    section 10.2.3); a date in the past means "now" (0), anything unreadable means "not said"."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is read as such
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def redirect_allowed(origin: str, target: str, domains: tuple[str, ...]) -> bool:
    """Whether a download of `origin` may follow a redirect to `target`: the same host, port and
    scheme (or an upgrade to https on its default port), or https on its default port on one of
    `domains` or a subdomain of it. Another port of the same host is another service (a local
    database, an admin page): never followed. Never from https down to http."""
    start, goal = urlsplit(origin), urlsplit(target)
    host = (goal.hostname or "").lower()
    try:
        start_port, goal_port = _port(start), _port(goal)
    except ValueError:  # a port that is not a number
        return False
    if not host or goal.scheme not in ("http", "https") or (start.scheme == "https" and goal.scheme != "https"):
        return False
    if host == (start.hostname or "").lower() and (goal.scheme, goal_port) in (
            (start.scheme, start_port), ("https", DEFAULT_PORTS["https"])):
        return True
    return (goal.scheme == "https" and goal_port == DEFAULT_PORTS["https"]
            and any(host == domain or host.endswith("." + domain) for domain in domains))


DEFAULT_PORTS = {"http": 80, "https": 443}


def _port(parts) -> int | None:
    """The URL's port, its scheme's default when it names none."""
    return parts.port or DEFAULT_PORTS.get(parts.scheme)


def download_result(
    url: str, *, client: httpx.Client | None = None, redirect_domains: tuple[str, ...] = (),
    max_bytes: int = MAX_DOWNLOAD_BYTES, timeout: float = 30.0, deadline: float | None = None,
    stop: threading.Event | None = None,
) -> bytes:
    """GET a result URL without any key, streaming, refusing anything over max_bytes.

    `client` is the caller's (a provider's injected client), else the shared one. A download is
    free and idempotent, so transport failures are retried; a 403/404/410 means the signed URL
    expired and is reported as such. `timeout` bounds each read; `deadline` (time.monotonic())
    bounds the whole download, so a server trickling bytes cannot hold it forever; `stop` ends it
    between chunks when the caller has given up on it.
    Redirects are followed only as `redirect_allowed` says (within `redirect_domains`, the
    provider's result domains), at most MAX_REDIRECTS of them.
    """
    last_error: Exception | None = None
    for _ in range(DOWNLOAD_ATTEMPTS):
        try:
            return _download_once(url, client=client or shared_client(), redirect_domains=redirect_domains,
                                  max_bytes=max_bytes, timeout=timeout, deadline=deadline, stop=stop)
        except (httpx.TransportError, _RetryableStatus) as error:
            last_error = error
    raise ProviderUnavailableError(
        f"Could not download the result from {describe_host(url)} after {DOWNLOAD_ATTEMPTS} tries "
        f"({type(last_error).__name__}). The task itself succeeded.",
        status=last_error.status if isinstance(last_error, _RetryableStatus) else None, billed=BILLED,
    )


class DownloadStopped(ProviderUnavailableError):
    """The download passed its deadline or its caller stopped it; the task's result is still there."""


class _RetryableStatus(Exception):
    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(status)


def _download_once(url: str, *, client: httpx.Client, redirect_domains: tuple[str, ...], max_bytes: int,
                   timeout: float, deadline: float | None, stop: threading.Event | None) -> bytes:
    # Delivery hosts may redirect to their storage; each hop is checked before it is requested.
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        with client.stream("GET", current, timeout=timeout, follow_redirects=False) as response:
            if not response.is_redirect:
                return _read_result(response, url, max_bytes=max_bytes, deadline=deadline, stop=stop)
            target = urljoin(current, response.headers["location"])
        if not redirect_allowed(current, target, redirect_domains):
            raise UnsafeUrlError(
                f"The result download from {describe_host(current)} was redirected to {describe_host(target)}, "
                "which is not a host this provider delivers results from; the redirect was not followed.",
                billed=BILLED,
            )
        current = target
    raise ProviderUnavailableError(f"The result download from {describe_host(url)} redirected more than "
                                   f"{MAX_REDIRECTS} times; it was stopped.", billed=BILLED)


def _read_result(response: httpx.Response, url: str, *, max_bytes: int, deadline: float | None,
                 stop: threading.Event | None) -> bytes:
    """The body of a final (non-redirect) answer, or the error its status means."""
    if response.status_code in (401, 403, 404, 410):
        raise ResultLinkError(
            f"The result link on {describe_host(url)} answered HTTP {response.status_code}: it has expired "
            "(BFL's links last 10 minutes) or was revoked.",
            status=response.status_code, billed=BILLED,
        )
    if response.status_code >= 500:
        raise _RetryableStatus(response.status_code)
    if response.status_code != 200:
        raise ProviderUnavailableError(
            f"Downloading the result from {describe_host(url)} failed with HTTP {response.status_code}.",
            status=response.status_code, billed=BILLED,
        )
    declared = int(response.headers.get("content-length") or 0)
    if declared > max_bytes:
        raise ResultTooLargeError(_too_large(declared, max_bytes))
    chunks: list[bytes] = []
    received = 0
    for chunk in response.iter_bytes():
        if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() > deadline):
            raise DownloadStopped(f"The download from {describe_host(url)} did not finish in time; it was stopped.",
                                  billed=BILLED)
        received += len(chunk)
        if received > max_bytes:
            raise ResultTooLargeError(_too_large(received, max_bytes))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> str:
    return f"The result download is over {size:,} bytes, above the safety limit of {limit:,} bytes; it was stopped."
