"""What a node says about its own run: live status while it runs, and after a Cancel or a failure
which tasks were paid and how to collect them.

Plain text with no ComfyUI in it, in the language of the browser that queued the run (the words
are the locale files'); tests read them directly and the ComfyUI layer sends them to the node.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .node_words import ENGLISH_WORDS, Words


@dataclass
class RunStatus:
    """The state of one node's run, fed by the engine's hooks from any thread."""

    words: Words = ENGLISH_WORDS
    started: float = field(default_factory=time.monotonic)
    status: str = ""  # the engine's or the provider's word for the stage; empty: queued
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
            parts = [self.status or self.words("status.queued")]
            if self.fraction is not None and 0 < self.fraction < 1:
                parts.append(f"{round(self.fraction * 100)}%")
            parts.append(self.words("status.elapsed", seconds=self.elapsed()))
            line = " · ".join(parts)
            if self.paid:
                line += "\n" + self.words("status.paidTask", tasks=", ".join(self.paid))
            return line

    def finished(self) -> str:
        return self.words("status.done", seconds=self.elapsed())

    def ended_early(self, *, cancelled: bool) -> str:
        """What the node says after a Cancel or a failure: the paid tasks and how to collect them."""
        with self._lock:
            head = self.words("status.cancelled" if cancelled else "status.failed", seconds=self.elapsed())
            if not self.paid:
                return self.words("status.sentences", first=head, second=self.words("status.nothingPaid")) \
                    if cancelled else head
            paid = self.words("status.onePaid" if len(self.paid) == 1 else "status.manyPaid",
                              tasks=", ".join(self.paid), how=self.words("status.collectHow"))
            return self.words("status.sentences", first=head, second=paid)
