"""`codey usage`: requests, quota, tokens, characters and cost per service, from the ledger."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from codey.cli.output import console, fail, print_json
from codey.config import Settings
from codey.errors import CodeyError
from codey.gateway.clock import QuotaDay, SystemClock
from codey.gateway.ledger import Ledger
from codey.store.sqlite import Database


def usage(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, max=366, help="How many days back.")] = 1,
    principal: Annotated[str | None, typer.Option(help="Only this principal.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Usage per day and service: requests against quota, cache hits, tokens and cost; batch
    lines on rows of their own, against the batch quota, at batch prices."""
    settings: Settings = ctx.obj
    try:
        rows = asyncio.run(_rows(settings, days, principal))
    except CodeyError as exc:
        raise fail(exc, as_json) from exc
    if as_json:
        print_json(rows)
        return
    table = Table(
        "day",
        "service",
        "requests",
        "quota",
        "rejected",
        "failed",
        "cache hits",
        "tokens",
        "chars in/out",
        "cost $",
        title="codey usage",
    )
    for r in rows:
        quota = "-" if r["quota"] is None else f"{r['quota']:,}"
        table.add_row(
            r["day"],
            f"{r['service']} (batch)" if r["batch"] else r["service"],
            f"{r['succeeded']:,}",
            quota,
            str(r["rejected"]),
            str(r["failed"]),
            str(r["cache_hits"]),
            f"{r['prompt_tokens'] + r['completion_tokens']:,}",
            f"{r['input_chars']:,}/{r['output_chars']:,}",
            f"{r['cost_usd']:.6f}",
        )
    console.print(table if rows else "[dim]no requests in the ledger for these days[/]")


async def _rows(settings: Settings, days: int, principal: str | None) -> list[dict[str, Any]]:
    db = Database(settings.store.sqlite_path)
    try:
        quota_day = QuotaDay(settings.limits.timezone)
        now = SystemClock().now()
        wanted = [quota_day.day(now - timedelta(days=n)) for n in range(days)]
        rows = await asyncio.to_thread(Ledger(db).history, wanted, principal)
        for row in rows:
            service = row["service"]
            row["quota"] = (
                settings.batch.requests_per_day.for_service(service)
                if row["batch"]
                else settings.limits.for_service(service).requests_per_day
            )
        return rows
    finally:
        db.close()
