"""The usage ledger: one row per request, whatever its outcome, and the reports built on it."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from codey.gateway.clock import QuotaDay
from codey.store.sqlite import Database


@dataclass(frozen=True)
class LedgerRow:
    ts: float
    day: str
    principal: str
    service: str
    dialect: str
    model: str
    backend: str
    """Type of the deployment that answered (llamacpp, openai, vertex), or cache."""
    prompt_tokens: int
    completion_tokens: int
    input_chars: int
    output_chars: int
    latency_ms: float
    """From arrival to answer."""
    waited_ms: float
    """Of that, the time spent waiting for a per-minute slot."""
    cached: bool
    status: int
    cost_usd: float
    error: str | None = None
    deployment: str | None = None
    """The deployment that answered, or the last one tried."""
    attempts: int = 0
    """Calls made to deployments for this request, retries and failovers included."""
    batch: bool = False
    """A batch job's line, priced at batch prices."""


_NAMES = [f.name for f in fields(LedgerRow)]
_INSERT = f"INSERT INTO ledger ({', '.join(_NAMES)}) VALUES ({', '.join('?' * len(_NAMES))})"
_values = attrgetter(*_NAMES)
"""The row's values in column order (`astuple` deep-copies, which costs more)."""
_SUMS = """
    count(*) AS requests,
    sum(status < 400) AS succeeded,
    sum(status = 429) AS rejected,
    sum(status >= 400 AND status != 429) AS failed,
    sum(cached) AS cache_hits,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(input_chars) AS input_chars,
    sum(output_chars) AS output_chars,
    sum(cost_usd) AS cost_usd
"""


class Ledger:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, row: LedgerRow) -> None:
        """Commit the row on the database's writer thread, with whatever else the request
        writes at the same time: never on the event loop, and durable (WAL) when this
        returns, so a crash after the response loses no row of an answered request."""
        await self._db.transact(lambda conn: _insert(conn, row))

    def by_service(
        self, day: str, principal: str | None = None, *, batch: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Totals of one day per service, for one principal or all; interactive requests, or
        batch lines with `batch`."""
        where, args = "day = ? AND batch = ?", [day, batch]
        if principal is not None:
            where, args = where + " AND principal = ?", [*args, principal]
        with self._db.transaction() as conn:
            rows = conn.execute(
                f"SELECT service, {_SUMS} FROM ledger WHERE {where} GROUP BY service", args
            ).fetchall()
        totals = [dict(r) for r in rows]
        return {t.pop("service"): {k: v or 0 for k, v in t.items()} for t in totals}

    def history(self, days: list[str], principal: str | None = None) -> list[dict[str, Any]]:
        """Totals per day, service and kind (interactive, or batch: `batch` is 1) over `days`."""
        marks = ", ".join("?" for _ in days)
        where, args = f"day IN ({marks})", list(days)
        if principal is not None:
            where, args = where + " AND principal = ?", [*days, principal]
        with self._db.transaction() as conn:
            rows = conn.execute(
                f"SELECT day, service, batch, {_SUMS} FROM ledger WHERE {where} "
                "GROUP BY day, service, batch ORDER BY day, service, batch",
                args,
            ).fetchall()
        return [
            {k: (v if k in ("day", "service") else v or 0) for k, v in dict(r).items()}
            for r in rows
        ]

    def stats(
        self, day: str, quota_day: QuotaDay, now: datetime, principal: str | None = None
    ) -> dict[str, Any]:
        """Latency histogram and percentiles per service for `day`, totals of the last seven
        days, and the ten latest errors; latency and errors of interactive requests only (a
        batch line waits behind them by design, and its errors go to its job's error file)."""
        who, args = ("", []) if principal is None else (" AND principal = ?", [principal])
        with self._db.transaction() as conn:
            rows = conn.execute(
                "SELECT service, latency_ms FROM ledger "
                f"WHERE day = ? AND status < 400 AND batch = 0{who}",
                [day, *args],
            ).fetchall()
            errors = conn.execute(
                "SELECT ts, service, dialect, status, error FROM ledger "
                f"WHERE status >= 400 AND batch = 0{who} ORDER BY id DESC LIMIT 10",
                args,
            ).fetchall()
        by_service: dict[str, list[float]] = {}
        for row in rows:
            by_service.setdefault(row["service"], []).append(row["latency_ms"] / 1000)
        days = [quota_day.day(now - timedelta(days=n)) for n in range(6, -1, -1)]
        return {
            "day": day,
            "latency": {s: _latency(v) for s, v in sorted(by_service.items())},
            "history": self.history(days, principal),
            "days": days,
            "errors": [dict(e) for e in errors],
        }

    def count(self) -> int:
        with self._db.transaction() as conn:
            return conn.execute("SELECT count(*) FROM ledger").fetchone()[0]


def _insert(conn: sqlite3.Connection, row: LedgerRow) -> None:
    conn.execute(_INSERT, _values(row))


LATENCY_EDGES = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


def _latency(seconds: list[float]) -> dict[str, Any]:
    ordered = sorted(seconds)

    def percentile(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

    counts = [0] * (len(LATENCY_EDGES) + 1)
    for value in ordered:
        counts[next((i for i, e in enumerate(LATENCY_EDGES) if value <= e), -1)] += 1
    return {
        "count": len(ordered),
        "p50": percentile(0.5),
        "p95": percentile(0.95),
        "p99": percentile(0.99),
        "edges": list(LATENCY_EDGES),
        "counts": counts,
    }
