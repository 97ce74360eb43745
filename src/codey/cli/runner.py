"""Run one job against a freshly started runtime, turning codey errors into clear exits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer

from codey.cli.output import byte_progress, errors, fail
from codey.config import Settings
from codey.errors import CodeyError
from codey.runtime import Runtime

T = TypeVar("T")


def run_job(ctx: typer.Context, as_json: bool, job: Callable[[Runtime], Awaitable[T]]) -> T:
    """Start the runtime (assembling the model if needed), run `job`, and close it."""
    settings: Settings = ctx.obj

    async def body() -> T:
        with byte_progress() as progress:
            runtime = await asyncio.to_thread(Runtime.start, settings, progress)
        try:
            return await job(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(body())
    except CodeyError as exc:
        raise fail(exc, as_json) from exc
    except KeyboardInterrupt:
        errors.print("interrupted")
        raise typer.Exit(130) from None
