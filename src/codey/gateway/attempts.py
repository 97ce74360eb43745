"""What the router did for the request in hand: each attempt, and which deployment answered.

The gateway opens a log when it admits a request and reads it when it writes the ledger row;
the router, several calls below, appends to whichever log is open. A context variable carries
it there without threading it through the services, which know nothing of deployments.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attempt:
    model: str
    deployment: str
    backend: str
    outcome: str
    """ok, or the kind of failure: unreachable, timeout, rate_limited, upstream_error..."""


@dataclass
class RouteLog:
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def answered(self) -> Attempt | None:
        """The attempt that produced the answer, if one did."""
        return next((a for a in reversed(self.attempts) if a.outcome == "ok"), None)


_CURRENT: ContextVar[RouteLog | None] = ContextVar("codey_route_log", default=None)


def open_log() -> RouteLog:
    """Start the log of a new request in the current context."""
    log = RouteLog()
    _CURRENT.set(log)
    return log


def record(attempt: Attempt) -> None:
    log = _CURRENT.get()
    if log is not None:
        log.attempts.append(attempt)
