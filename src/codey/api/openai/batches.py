"""OpenAI's Batch API: a JSONL file of requests in, a JSONL file of responses out.

Lines are `{"custom_id", "method": "POST", "url", "body"}` for /v1/chat/completions,
/v1/completions, or codey's native /api/v1/codey/generate and /api/v1/codey/complete. A job
is checked as a whole when it is made (purpose, endpoint, size, custom_ids unique); a line
that cannot run (not JSON, another url, a body its endpoint refuses) fails alone, with its
error in the job's error file.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from codey.api.calls import batches_of, principal
from codey.api.errors import HttpError, error_body, invalid
from codey.api.models import pick_model
from codey.api.native.protocol import CompleteBody, GenerateBody
from codey.api.openai.files import owned_file, page
from codey.api.openai.protocol import ChatCompletionRequest, CompletionRequest
from codey.api.unicode import lone_surrogate, not_text
from codey.config import Settings
from codey.errors import InvalidRequest, NotFound
from codey.gateway.auth import Principal
from codey.gateway.job import Job
from codey.gateway.pipeline import Call
from codey.store.batches import BatchJob, BatchStore, Counts, Line, new_id

router = APIRouter(prefix="/v1", tags=["openai batch"])
Caller = Annotated[Principal, Depends(principal)]
Endpoint = Literal[
    "/v1/chat/completions", "/v1/completions", "/api/v1/codey/generate", "/api/v1/codey/complete"
]
BatchBody = type[ChatCompletionRequest | CompletionRequest | GenerateBody | CompleteBody]
BODIES: tuple[BatchBody, ...] = (
    ChatCompletionRequest,
    CompletionRequest,
    GenerateBody,
    CompleteBody,
)
ENDPOINTS: dict[str, BatchBody] = dict(zip(get_args(Endpoint), BODIES, strict=True))
WINDOWS = {"24h": 24 * 3600}


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_file_id: str = Field(min_length=1)
    endpoint: Endpoint
    completion_window: Literal["24h"] = "24h"
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


def batch_object(job: BatchJob, counts: Counts) -> dict[str, Any]:
    t = job.times
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": job.endpoint,
        "errors": {"object": "list", "data": job.options["errors"]}
        if job.options.get("errors")
        else None,
        "input_file_id": job.input_file_id,
        "completion_window": job.options.get("completion_window", "24h"),
        "status": job.status,
        "output_file_id": job.output_file_id,
        "error_file_id": job.error_file_id,
        "created_at": job.created_at,
        "in_progress_at": t.get("in_progress_at"),
        "expires_at": job.expires_at,
        "finalizing_at": t.get("finalizing_at"),
        "completed_at": t.get("completed_at"),
        "failed_at": t.get("failed_at"),
        "expired_at": t.get("expired_at"),
        "cancelling_at": t.get("cancelling_at"),
        "cancelled_at": t.get("cancelled_at"),
        "request_counts": {
            "total": counts.total,
            "completed": counts.completed,
            "failed": counts.failed,
        },
        "metadata": job.metadata,
    }


@router.post("/batches")
async def create_batch(body: BatchCreate, request: Request, who: Caller) -> dict[str, Any]:
    """Run every request of an uploaded file, behind interactive traffic, at batch prices."""
    source = await owned_file(request, who, body.input_file_id)
    if source.purpose != "batch":
        raise InvalidRequest(
            f"The file {source.id} was uploaded for {source.purpose!r}, not for 'batch'."
        )
    store = batches_of(request)
    settings: Settings = request.app.state.runtime.settings
    content = await store.content(source.id)
    lines = await asyncio.to_thread(read_lines, content, settings.batch.max_lines)
    now = int(time.time())
    job = BatchJob(
        id=new_id("batch"),
        owner=who.name,
        kind="openai",
        endpoint=body.endpoint,
        status="validating",
        created_at=now,
        expires_at=now + WINDOWS[body.completion_window],
        input_file_id=source.id,
        metadata=body.metadata,
        options={"completion_window": body.completion_window},
    )
    await store.create(job, [Line(job.id, n, custom, text) for n, custom, text in lines])
    request.app.state.batch_runner.wake()
    return batch_object(job, Counts(len(lines), 0, 0))


def read_lines(content: bytes, max_lines: int) -> list[tuple[int, str | None, str]]:
    """(place, custom_id, text) of each non-blank line; refuses the file as a whole when
    custom_ids repeat or it has too many lines. A line that is not JSON keeps no custom_id
    and fails when it runs."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"The file is not UTF-8 text: {exc}.") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InvalidRequest("The file holds no requests.")
    if len(lines) > max_lines:
        raise InvalidRequest(
            f"The file holds {len(lines):,} requests; a batch takes {max_lines:,}."
        )
    seen: dict[str, int] = {}
    read = []
    for number, line in enumerate(lines):
        custom = _custom_id(line)
        if custom is not None and custom in seen:
            raise InvalidRequest(
                f"Line {number + 1} repeats custom_id {custom!r} of line {seen[custom] + 1}.",
                hint="Each request needs a custom_id of its own.",
            )
        if custom is not None:
            seen[custom] = number
        read.append((number, custom, line))
    return read


def _custom_id(line: str) -> str | None:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    custom = value.get("custom_id") if isinstance(value, dict) else None
    return custom if isinstance(custom, str) else None


@router.get("/batches/{batch_id}")
async def retrieve_batch(batch_id: str, request: Request, who: Caller) -> dict[str, Any]:
    job = await _owned(request, who, batch_id)
    return batch_object(job, (await batches_of(request).counts([job.id]))[job.id])


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request, who: Caller) -> dict[str, Any]:
    """Stop a job: lines in flight are dropped, answered ones stay in its output."""
    await _owned(request, who, batch_id)
    store = batches_of(request)
    job = await store.cancel(batch_id)
    request.app.state.batch_runner.wake()
    assert job is not None  # owned a moment ago; jobs are never deleted
    return batch_object(job, (await store.counts([job.id]))[job.id])


@router.get("/batches")
async def list_batches(
    request: Request,
    who: Caller,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """The caller's jobs, newest first; `after` pages on."""
    store = batches_of(request)
    jobs = await store.jobs(None if who.admin else who.name, "openai", limit + 1, after)
    counts = await store.counts([j.id for j in jobs[:limit]])
    return page([batch_object(j, counts[j.id]) for j in jobs[:limit]], len(jobs) > limit)


async def _owned(request: Request, who: Principal, batch_id: str) -> BatchJob:
    job = await batches_of(request).get(batch_id)
    if job is None or job.kind != "openai" or not (who.admin or job.owner == who.name):
        raise NotFound(f"No such batch: {batch_id!r}.")
    return job


class OpenAIBatches:
    """The runner's view of OpenAI batch jobs."""

    def __init__(self, settings: Settings, model_names: list[str]) -> None:
        self.settings = settings
        self.model_names = model_names

    def call(self, job: BatchJob, line: Line, principal: Principal) -> Call:
        try:
            request = json.loads(line.request)
        except (ValueError, RecursionError) as exc:
            raise InvalidRequest(f"Line {line.line + 1} is not JSON: {exc}.") from None
        if not isinstance(request, dict) or not isinstance(request.get("body"), dict):
            raise InvalidRequest(f"Line {line.line + 1} has no request body.")
        if (where := lone_surrogate(request)) is not None:
            raise InvalidRequest(f"Line {line.line + 1}, {not_text(where)}")
        if line.custom_id is None:
            raise InvalidRequest(f"Line {line.line + 1} has no custom_id.")
        if request.get("url") != job.endpoint or request.get("method", "POST") != "POST":
            raise InvalidRequest(
                f"Line {line.line + 1} asks for {request.get('method')} {request.get('url')}; "
                f"this batch runs POST {job.endpoint}."
            )
        if request["body"].get("stream"):
            raise InvalidRequest("A batch request cannot be streamed; leave out stream.")
        try:
            work: Job = ENDPOINTS[job.endpoint].model_validate(request["body"])
        except ValidationError as exc:
            raise invalid(exc) from None
        model = pick_model(self.settings, self.model_names, work.service, work.asked_model())
        return Call(principal, work, model, batch=True)

    async def finish(self, job: BatchJob, store: BatchStore) -> dict[str, Any]:
        """The output file (answered lines) and the error file (failed ones), in input order."""
        fields: dict[str, Any] = {}
        for state, field, name in (
            ("done", "output_file_id", "output"),
            ("failed", "error_file_id", "errors"),
        ):
            lines = await store.settled(job.id, state)  # type: ignore[arg-type]
            if lines:
                content = "".join(json.dumps(output_line(x)) + "\n" for x in lines)
                stored = await store.add_file(
                    job.owner, "batch_output", f"{job.id}_{name}.jsonl", content.encode()
                )
                fields[field] = stored.id
        return fields


def output_line(line: Line) -> dict[str, Any]:
    """A settled line in OpenAI's output format."""
    result = json.loads(line.result or "{}")
    status = line.status or 500
    request_id = f"req_{secrets.token_hex(12)}"
    if "body" in result:
        response = {"status_code": status, "request_id": request_id, "body": result["body"]}
        return _line(line, response, None)
    message = result.get("error", {}).get("message", "failed")
    if status == 408:
        return _line(line, None, {"code": "batch_expired", "message": message})
    body = error_body(HttpError(status, _KINDS.get(status, "error"), message), "openai")
    return _line(line, {"status_code": status, "request_id": request_id, "body": body}, None)


_KINDS = {400: "invalid_request", 403: "forbidden", 404: "not_found", 429: "rate_limited"}


def _line(line: Line, response: Any, error: Any) -> dict[str, Any]:
    return {
        "id": f"batch_req_{line.batch_id.removeprefix('batch_')}_{line.line}",
        "custom_id": line.custom_id,
        "response": response,
        "error": error,
    }
