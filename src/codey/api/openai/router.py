"""/v1/models, /v1/chat/completions and /v1/completions, streaming as server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from codey.api.calls import principal, serve, stream
from codey.api.errors import error_body, from_codey
from codey.api.models import resolve_model
from codey.api.openai.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    TokenizeRequest,
    TokenizeResponse,
    chat_logprobs,
    new_id,
    now,
)
from codey.backends.base import ChatPrompt, Choice, Delta, TextPrompt
from codey.errors import CodeyError, InvalidRequest
from codey.gateway.auth import Principal
from codey.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["openai"])
tokenizer = APIRouter(tags=["openai"])
Caller = Annotated[Principal, Depends(principal)]


@router.get("/models")
async def list_models(request: Request) -> dict[str, object]:
    """The models this server answers to."""
    created = int(request.app.state.started_at)
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "codey"}
            for name in request.app.state.model_names
        ],
    }


@tokenizer.post("/tokenize", response_model=TokenizeResponse)
async def tokenize(body: TokenizeRequest, request: Request, who: Caller) -> TokenizeResponse:
    """Count a prompt's tokens as vLLM's /tokenize does, so that another codey in front of
    this one can fit conversations to the window."""
    if (body.prompt is None) == (body.messages is None):
        raise InvalidRequest("Send either prompt or messages.")
    runtime: Runtime = request.app.state.runtime
    backend = runtime.routers[resolve_model(request, "chat", body.model)]
    if body.messages is not None:
        count = await backend.count_tokens(ChatPrompt([m.to_message() for m in body.messages]))
    else:
        count = await backend.count_tokens(TextPrompt(body.prompt or ""))
    return TokenizeResponse(count=count, max_model_len=backend.context_length)


@router.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, who: Caller
) -> JSONResponse | StreamingResponse:
    """Chat with the model; `stream: true` sends chunks as server-sent events."""
    if body.stream:
        return await _sse(request, who, body, _chat_chunker(body))
    return await serve(request, who, body)


@router.post("/completions", response_model=Completion)
async def completions(
    body: CompletionRequest, request: Request, who: Caller
) -> JSONResponse | StreamingResponse:
    """Continue a prompt, or fill in the middle when a suffix is given."""
    if body.stream:
        return await _sse(request, who, body, _completion_chunker(body))
    return await serve(request, who, body)


# DeepSeek's fill-in-the-middle route, which Continue's "deepseek" provider calls relative to
# its apiBase (with or without /v1): the same completions.
router.post("/beta/completions", response_model=Completion)(completions)
tokenizer.post("/beta/completions", response_model=Completion)(completions)


Chunker = Callable[[Delta, bool], dict[str, object]]


def _chat_chunker(body: ChatCompletionRequest) -> Chunker:
    chunk_id, created = new_id("chatcmpl"), now()

    def chunk(delta: Delta, first: bool) -> dict[str, object]:
        content: dict[str, str] = {"role": "assistant"} if first else {}
        if delta.text or first:
            content["content"] = delta.text
        logprobs = None
        if body.logprobs and delta.token is not None:
            logprobs = chat_logprobs(Choice(delta.text, [delta.token])).model_dump()
        return {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "delta": content,
                    "logprobs": logprobs,
                    "finish_reason": delta.finish_reason,
                }
            ],
        }

    return chunk


def _completion_chunker(body: CompletionRequest) -> Chunker:
    chunk_id, created = new_id("cmpl"), now()

    def chunk(delta: Delta, first: bool) -> dict[str, object]:
        text = (body.prompt_text if body.echo and first else "") + delta.text
        return {
            "id": chunk_id,
            "object": "text_completion",
            "created": created,
            "model": body.model,
            "choices": [
                {"index": 0, "text": text, "logprobs": None, "finish_reason": delta.finish_reason}
            ],
        }

    return chunk


async def _sse(
    request: Request,
    who: Principal,
    body: ChatCompletionRequest | CompletionRequest,
    chunk: Chunker,
) -> StreamingResponse:
    deltas = await stream(request, who, body)

    async def events() -> AsyncIterator[str]:
        last: Delta | None = None
        try:
            async with aclosing(deltas):
                async for delta in deltas:
                    yield f"data: {json.dumps(chunk(delta, last is None))}\n\n"
                    last = delta
        except CodeyError as exc:
            # Headers are gone: the failure travels as an event, as vLLM and OpenAI send it.
            yield f"data: {json.dumps(error_body(from_codey(exc, 0), 'openai'))}\n\n"
            yield "data: [DONE]\n\n"
            return
        if body.include_usage and last is not None:
            usage = {
                "prompt_tokens": last.prompt_tokens,
                "completion_tokens": last.completion_tokens,
                "total_tokens": last.prompt_tokens + last.completion_tokens,
            }
            final = chunk(Delta(""), False) | {"choices": [], "usage": usage}
            yield f"data: {json.dumps(final)}\n\n"
        yield "data: [DONE]\n\n"

    headers = {"Cache-Control": "no-cache", "x-codey-cache": "miss"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
