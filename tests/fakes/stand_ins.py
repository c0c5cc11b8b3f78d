"""The registry of provider stand-ins, keyed by the provider's name in the engine's registry.

Each fake server module registers what the shared provider suite (tests/test_providers.py) needs
to drive it: how to start one, and the plans for a task that succeeds, fails, is moderated or keeps
running (the key it accepts is its `api_key`). The suite runs over every provider the engine knows and fails for
one without a stand-in, so a provider added to the engine cannot skip the shared tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .loopback import LoopbackFake


@dataclass(frozen=True)
class StandIn:
    """How to drive one provider's loopback stand-in; each plan callable returns the fake's plan
    object, which the test appends to the fake's `plans`."""

    provider: str  # the name in the engine's provider registry
    start: Callable[[], LoopbackFake]  # a new stand-in, not yet started (use it in a `with`)
    plan: Callable[..., Any]  # the fake's plan type: no arguments is a task that succeeds
    failed: Callable[[str], Any]  # a task the provider reports failed with this reason
    moderated: Callable[[], Any]  # a task whose result the provider's moderation withholds
    running: Callable[[], Any]  # a task that never finishes (a synchronous one: that finishes at once)
    # A synchronous provider answers the submit with the image: no poll, no download unless the
    # answer is a link, and a refusal names no task (there is none yet).
    synchronous: bool = False
    # Whether the image comes as a link downloaded without the key (a polled task's result, or a
    # synchronous gateway answering with BFL's delivery link); else its bytes are in the answer.
    delivers_link: bool = True


STAND_INS: dict[str, StandIn] = {}


def register(*stand_ins: StandIn) -> None:
    """Add stand-ins to the registry; a provider registered twice is a mistake in the fakes."""
    for stand_in in stand_ins:
        if stand_in.provider in STAND_INS:
            raise ValueError(f"a stand-in for {stand_in.provider} is already registered")
        STAND_INS[stand_in.provider] = stand_in
