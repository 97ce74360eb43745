"""A circuit breaker per deployment: after enough failures in a row, stop calling it for a
while, then let one trial call decide whether it is back.

Small enough to own: the libraries on PyPI are synchronous or tied to one event loop style,
and the router needs to ask "when may I call again?" to plan its retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class Breaker:
    def __init__(
        self, failures: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = failures
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._cool_until = 0.0
        self._trial = False
        self.state: State = "closed"

    def ready_in(self) -> float:
        """Seconds until a call may go through; 0 means now."""
        now = self._clock()
        wait = max(self._cool_until - now, 0.0)
        if self.state == "open":
            wait = max(wait, self._opened_at + self.reset_seconds - now)
        elif self.state == "half_open" and self._trial:
            wait = max(wait, self.reset_seconds)
        return wait

    def acquire(self) -> bool:
        """Take the right to call now; an open breaker past its reset lets one trial through."""
        if self.ready_in() > 0:
            return False
        if self.state == "open":
            self.state = "half_open"
        if self.state == "half_open":
            self._trial = True
        return True

    def success(self) -> None:
        self._failures, self._trial, self.state = 0, False, "closed"

    def failure(self) -> None:
        self._failures += 1
        self._trial = False
        if self.state == "half_open" or self._failures >= self.threshold:
            self.state, self._opened_at = "open", self._clock()

    def release(self) -> None:
        """A call that ended without saying anything about the deployment (cancelled)."""
        self._trial = False
        if self.state == "half_open":
            self.state, self._opened_at = "open", self._clock() - self.reset_seconds

    def cool(self, seconds: float) -> None:
        """The deployment asked for a pause (Retry-After): no calls until it is over."""
        self._cool_until = max(self._cool_until, self._clock() + seconds)
