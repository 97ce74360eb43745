"""The app factory: one FastAPI app with the dialects over one runtime."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import Route, compile_path

from codey import __version__
from codey.api import health, observability, openapi
from codey.api.errors import (
    Unexpected,
    dialect_of,
    from_codey,
    from_http,
    from_validation,
    render,
)
from codey.api.limits import BodyLimit
from codey.api.llamacpp.router import router as llamacpp_router
from codey.api.models import served_names
from codey.api.native.router import router as native_router
from codey.api.openai.batches import OpenAIBatches
from codey.api.openai.batches import router as batches_router
from codey.api.openai.files import router as files_router
from codey.api.openai.router import router as openai_router
from codey.api.openai.router import tokenizer
from codey.api.unicode import TextCheck
from codey.api.vertex.batches import VertexBatches
from codey.api.vertex.batches import router as vertex_batches_router
from codey.api.vertex.router import router as vertex_router
from codey.backends.llamacpp import LlamaCppBackend
from codey.config import Settings
from codey.errors import CodeyError
from codey.gateway.batches import BatchRunner
from codey.gateway.clock import Clock
from codey.gateway.metrics import Metrics
from codey.runtime import Runtime


def _allowed(app: FastAPI, path: str) -> list[str]:
    """The methods of the routes that serve `path` by the most specific template (the one
    with the most literal characters: `/jobs/{id}:cancel` rather than `/jobs/{id}`)."""
    matching: dict[str, set[str]] = {}
    for context in iter_route_contexts(app.routes):
        route, template = context.original_route, context.path_format or ""
        served = template and compile_path(template)[0].match(path)
        if isinstance(route, Route) and route.methods and served:
            matching.setdefault(template, set()).update(route.methods)
    if not matching:
        return []
    literal = {t: len(re.sub(r"{[^}]*}", "", t)) for t in matching}
    best = max(literal.values())
    return sorted(set().union(*(m for t, m in matching.items() if literal[t] == best)))


def create_app(
    settings: Settings, runtime: Runtime | None = None, clock: Clock | None = None
) -> FastAPI:
    """Build the app; it starts `runtime` (or a new one) in its lifespan and closes it after."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started: Runtime = (
            runtime
            if runtime is not None
            else await asyncio.to_thread(Runtime.start, settings, clock=clock)
        )
        app.state.runtime = started
        app.state.started_at = time.time()
        metrics = started.metrics
        for engine in started.engines.values():
            _watch(metrics, engine)
        app.state.metrics = metrics
        app.state.gateway = started.gateway
        app.state.model_names = served_names(list(started.routers), settings.server.model_aliases)
        runner = BatchRunner(
            started.gateway,
            started.batches,
            settings.batch,
            {
                "openai": OpenAIBatches(settings, app.state.model_names),
                "vertex": VertexBatches(settings, app.state.model_names),
            },
        )
        app.state.batch_runner = runner
        batch_work = asyncio.create_task(runner.run(), name="codey-batches")
        try:
            yield
        finally:
            batch_work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await batch_work
            await runner.close()
            if runtime is None:
                await started.close()

    app = FastAPI(
        title="codey",
        version=__version__,
        description="Code generation, code chat and code completion in four dialects: "
        "native (/api/v1/codey), OpenAI-compatible (/v1), Vertex AI Codey (/v1/projects) "
        "and llama.cpp's /infill for editor plugins.",
        lifespan=lifespan,
    )
    uploads = {"/v1/files": settings.batch.max_file_bytes}
    # The last added runs first: the 500 for a bug anywhere below, the size limit, the text
    # check, then the routes.
    app.add_middleware(TextCheck)
    app.add_middleware(BodyLimit, max_bytes=settings.server.max_body_bytes, uploads=uploads)
    app.add_middleware(Unexpected)
    retry_after = settings.server.retry_after_seconds

    @app.exception_handler(CodeyError)
    async def codey_error(request: Request, exc: CodeyError) -> JSONResponse:
        return render(from_codey(exc, retry_after), dialect_of(request.url.path))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        said = request.headers.get("content-type", "")
        return render(from_validation(exc, said), dialect_of(request.url.path))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        error = from_http(exc.status_code, str(exc.detail), exc.__cause__)
        response = render(error, dialect_of(request.url.path))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only its first route's
            response.headers["Allow"] = ", ".join(_allowed(app, request.url.path))
        return response

    app.include_router(health.router)
    app.include_router(observability.router)
    app.include_router(native_router)
    app.include_router(openai_router)
    app.include_router(tokenizer)
    app.include_router(vertex_router)
    app.include_router(llamacpp_router)
    app.include_router(files_router)
    app.include_router(batches_router)
    app.include_router(vertex_batches_router)
    openapi.install(app)
    return app


def _watch(metrics: Metrics, engine: LlamaCppBackend) -> None:
    metrics.watch_engine(
        engine.model_id,
        lambda: engine.queue_depth,
        lambda: engine.decode_rate,
        lambda: float(engine.state == "ready"),
        lambda: engine.engine.stats,
    )
