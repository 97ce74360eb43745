"""/v1/models, /v1/chat/completions and /v1/completions, streaming as server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from codey.api.calls import call_service, first_and_rest
from codey.api.models import require_model
from codey.api.openai.protocol import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessageOut,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Usage,
    chat_logprobs,
    completion_logprobs,
    new_id,
    now,
)
from codey.backends.base import Choice, Delta
from codey.errors import InvalidRequest
from codey.gateway.usage import Service
from codey.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["openai"])


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@router.get("/models")
async def list_models(request: Request) -> dict[str, object]:
    """The models this server answers to."""
    created = int(request.app.state.usage.started_at)
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "codey"}
            for name in request.app.state.model_names
        ],
    }


@router.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(
    body: ChatCompletionRequest, request: Request
) -> ChatCompletion | StreamingResponse:
    """Chat with the model; `stream: true` sends chunks as server-sent events."""
    require_model(request, body.model)
    runtime = _runtime(request)
    messages = body.to_messages()
    params = body.to_sampling_params(runtime.settings.chat.max_tokens)
    if body.stream:
        _require_single(body.n)
        stream = runtime.chat.stream_reply(messages, params)
        return await _sse(request, "chat", stream, _chat_chunker(body), body.include_usage)
    generation = await call_service(request, "chat", runtime.chat.reply(messages, params))
    return ChatCompletion(
        id=new_id("chatcmpl"),
        created=now(),
        model=body.model,
        choices=[
            ChatChoice(
                index=i,
                message=ChatMessageOut(content=choice.text),
                logprobs=chat_logprobs(choice) if body.logprobs else None,
                finish_reason=choice.finish_reason,
            )
            for i, choice in enumerate(generation.choices)
        ],
        usage=Usage.of(generation),
    )


@router.post("/completions", response_model=Completion)
async def completions(body: CompletionRequest, request: Request) -> Completion | StreamingResponse:
    """Continue a prompt, or fill in the middle when a suffix is given."""
    require_model(request, body.model)
    runtime = _runtime(request)
    params = body.to_sampling_params()
    prompt = body.prompt_text
    if body.stream:
        _require_single(body.n)
        stream = runtime.completion.stream_raw(prompt, body.suffix, params)
        return await _sse(
            request, "completion", stream, _completion_chunker(body), body.include_usage
        )
    generation = await call_service(
        request, "completion", runtime.completion.raw(prompt, body.suffix, params)
    )
    echo = prompt if body.echo else ""
    return Completion(
        id=new_id("cmpl"),
        created=now(),
        model=body.model,
        choices=[
            CompletionChoice(
                index=i,
                text=echo + choice.text,
                logprobs=completion_logprobs(choice, len(echo))
                if body.logprobs is not None
                else None,
                finish_reason=choice.finish_reason,
            )
            for i, choice in enumerate(generation.choices)
        ],
        usage=Usage.of(generation),
    )


def _require_single(n: int) -> None:
    if n != 1:
        raise InvalidRequest("Streaming returns one choice; send n = 1 or stream = false.")


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
    service: Service,
    stream: AsyncIterator[Delta],
    chunk: Chunker,
    include_usage: bool,
) -> StreamingResponse:
    tally = request.app.state.usage
    try:
        first, rest = await first_and_rest(stream)
    except Exception:
        tally.record(service, ok=False)
        raise

    async def events() -> AsyncIterator[str]:
        delta, is_first = first, True
        try:
            while True:
                yield f"data: {json.dumps(chunk(delta, is_first))}\n\n"
                if delta.finish_reason is not None:
                    break
                delta, is_first = await anext(rest), False
        finally:
            await rest.aclose()  # type: ignore[attr-defined]
        tally.record(
            service,
            ok=True,
            prompt_tokens=delta.prompt_tokens,
            completion_tokens=delta.completion_tokens,
        )
        if include_usage:
            usage = {
                "prompt_tokens": delta.prompt_tokens,
                "completion_tokens": delta.completion_tokens,
                "total_tokens": delta.prompt_tokens + delta.completion_tokens,
            }
            last = chunk(Delta(""), False) | {"choices": [], "usage": usage}
            yield f"data: {json.dumps(last)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
