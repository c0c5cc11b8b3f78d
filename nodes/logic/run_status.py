"""What a node says about its own run: live status while it runs, and after a Cancel or a failure
which tasks were paid and how to collect them.

Plain text with no ComfyUI in it, so the words live in one place (to be translated) and tests
read them directly; the ComfyUI layer sends them to the node.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

COLLECT_HOW = ("press Run again with the same settings to collect it without paying again, or pick it in a "
               "Recover paid task node")
NOTHING_PAID = "Nothing was paid."


@dataclass
class RunStatus:
    """The state of one node's run, fed by the engine's hooks from any thread."""

    started: float = field(default_factory=time.monotonic)
    status: str = "queued"
    fraction: float | None = None
    paid: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def progress(self, fraction: float | None, status: str) -> None:
        with self._lock:
            self.status = status or self.status
            if fraction is not None:
                self.fraction = fraction

    def submitted(self, task_id: str) -> None:
        with self._lock:
            if task_id and task_id not in self.paid:
                self.paid.append(task_id)

    def elapsed(self) -> int:
        return int(time.monotonic() - self.started)

    def text(self) -> str:
        """One or two lines: what is happening, how far, for how long; the paid task once there is one."""
        with self._lock:
            parts = [self.status]
            if self.fraction is not None and 0 < self.fraction < 1:
                parts.append(f"{round(self.fraction * 100)}%")
            parts.append(f"{self.elapsed()} s")
            line = " · ".join(parts)
            if self.paid:
                line += "\npaid task: " + ", ".join(self.paid)
            return line

    def finished(self) -> str:
        return f"done in {self.elapsed()} s"

    def ended_early(self, *, cancelled: bool, reason: str = "") -> str:
        """What the node says after a Cancel or a failure: the paid tasks and how to collect them."""
        with self._lock:
            head = f"Cancelled after {self.elapsed()} s." if cancelled else f"Failed after {self.elapsed()} s."
            if not self.paid:
                return f"{head} {NOTHING_PAID}" if cancelled else head
            which = ", ".join(self.paid)
            noun = "Task" if len(self.paid) == 1 else "Tasks"
            verb = "was" if len(self.paid) == 1 else "were"
            return f"{head} {noun} {which} {verb} paid: {COLLECT_HOW}."
