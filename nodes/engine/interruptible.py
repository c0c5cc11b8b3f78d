"""Blocking network calls that a Cancel, Ctrl-C or deadline can leave within a fraction of a second.

A read that hangs (a poll the server never answers, a download trickling a byte a second) would
otherwise hold the caller until the socket's own timeout, ignoring the user. The call runs on a
daemon thread; the caller waits in short slices, checking for cancellation and its deadline.
When it leaves early it sets the call's `stop` event, which the call checks between chunks so
the thread ends soon after instead of reading on in the background.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
WAIT_SLICE = 0.05


def call_interruptibly(
    call: Callable[[threading.Event], T],
    *,
    deadline: float,
    check_cancelled: Callable[[], None],
    on_deadline: Callable[[], BaseException],
) -> T:
    """Run `call(stop)` and return its value or raise its error.

    `check_cancelled` raises to abandon the call; past `deadline` (time.monotonic()) the error
    from `on_deadline` is raised.
    """
    stop = threading.Event()
    finished = threading.Event()
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = call(stop)
        except BaseException as error:  # handed to the waiting caller, re-raised there
            outcome["error"] = error
        finally:
            finished.set()

    threading.Thread(target=target, name="flux-flex-call", daemon=True).start()
    try:
        while not finished.wait(WAIT_SLICE):
            check_cancelled()
            if time.monotonic() > deadline:
                raise on_deadline()
    finally:
        if not finished.is_set():
            stop.set()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
