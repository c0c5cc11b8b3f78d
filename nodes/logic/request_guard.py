"""Which requests may read or change the stored keys: the pack's own check, not ComfyUI's.

ComfyUI's own middleware (0.3.64 and 0.33.0) compares Origin and Host only when the Host is a
loopback name; 0.33.0 also refuses `Sec-Fetch-Site: cross-site`, which older browsers do not
send; with `--enable-cors-header` neither check runs. So a page the user visits can post a plain
cross-site form to ComfyUI opened by its LAN address, and a DNS-rebound name passes too. The key
routes therefore check, themselves and whatever address ComfyUI is opened by:

- the `X-Flux2-Flex: 1` header, which the pack's settings form sends and a cross-site form or
  image cannot: a foreign page needs a CORS preflight for it, which ComfyUI never grants for
  this header (its CORS option allows only Content-Type and Authorization);
- `Sec-Fetch-Site`, where the browser sends it, must say same-origin;
- the Host must be a name this machine answers to (an IP address, localhost, the machine's own
  name, or one listed in FLUX_FLEX_TRUSTED_HOSTS), which defeats DNS rebinding;
- the Origin, required on every request that changes keys, must be that same host and port;
- a change must come from the machine itself (a loopback peer) unless the user opted in with
  FLUX_FLEX_REMOTE_KEY_WRITES=1.

Imports nothing from ComfyUI or aiohttp, so the rules are tested on their own.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

KEY_ROUTE_HEADER = "X-Flux2-Flex"
TRUSTED_HOSTS_ENV = "FLUX_FLEX_TRUSTED_HOSTS"
REMOTE_WRITES_ENV = "FLUX_FLEX_REMOTE_KEY_WRITES"
DEFAULT_PORTS = {"http": 80, "https": 443}


def machine_names(extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names that mean this machine: localhost, its own name, listen names and the
    comma-separated FLUX_FLEX_TRUSTED_HOSTS (for a name on the LAN or a reverse proxy)."""
    hostname = socket.gethostname().lower()
    configured = os.environ.get(TRUSTED_HOSTS_ENV, "").split(",")
    names = {"localhost", hostname, f"{hostname}.local", *extra, *configured}
    return frozenset(name.strip().lower().rstrip(".") for name in names if name.strip())


def remote_writes_allowed() -> bool:
    return os.environ.get(REMOTE_WRITES_ENV, "").strip().lower() in ("1", "true", "yes")


def key_route_refusal(
    method: str, headers: Mapping[str, str], remote: str | None, *, names: frozenset[str], writes: bool
) -> str | None:
    """Why a request to a key route is refused, or None when it may go ahead.

    `headers` must look names up case-insensitively (aiohttp's do); `remote` is the peer address.
    """
    if headers.get(KEY_ROUTE_HEADER) != "1":
        return f"the {KEY_ROUTE_HEADER} header is missing (only the pack's settings form may use this route)"
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site != "same-origin":
        return f"the browser says the request is {fetch_site}, not same-origin"
    host = _host_and_port(headers.get("Host", ""))
    if host is None or not _is_machine_name(host[0], names):
        return (f"Host {headers.get('Host', '(none)')!r} is not a name this machine answers to (add it to "
                f"{TRUSTED_HOSTS_ENV} if you open ComfyUI by that name)")
    origin = headers.get("Origin")
    if origin is None:
        if method != "GET":
            return "a request that changes keys must carry an Origin header"
    elif not _same_origin(origin, host):
        return f"Origin {origin!r} is not the page ComfyUI serves at {headers.get('Host')!r}"
    if writes and not _is_loopback(remote) and not remote_writes_allowed():
        return (f"keys can be changed only from this machine (the request came from {remote}); set "
                f"{REMOTE_WRITES_ENV}=1 before starting ComfyUI to allow other machines")
    return None


def _host_and_port(value: str) -> tuple[str, int | None] | None:
    """Host header to (lowercase host, port or None); None when it cannot be parsed."""
    try:
        parts = urlsplit("//" + value.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.path:
        return None
    return parts.hostname.lower().rstrip("."), port


def _is_machine_name(host: str, names: frozenset[str]) -> bool:
    """An IP literal cannot be rebound; a name can, so it must be one the user trusts."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host in names


def _same_origin(origin: str, host: tuple[str, int | None]) -> bool:
    try:
        parts = urlsplit(origin)
        origin_port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return False  # "null" (sandboxed frames, file: pages) and other schemes
    host_name, host_port = host
    return parts.hostname.lower().rstrip(".") == host_name and origin_port == (host_port or DEFAULT_PORTS[parts.scheme])


def _is_loopback(remote: str | None) -> bool:
    try:
        address = ipaddress.ip_address((remote or "").split("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 from a dual-stack socket
    return (mapped or address).is_loopback
