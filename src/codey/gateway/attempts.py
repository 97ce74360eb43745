"""What the router did for one request: each attempt, and which deployment answered.

The gateway opens a log when it admits a request and hands the services a view of the router
that writes into it (`Router.traced`); it reads the log back when it writes the ledger row.
"""

from __future__ import annotations

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
