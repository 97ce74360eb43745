"""/api/v1/codey: generate, chat, complete and usage."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from codey.api.calls import gateway_of, new_call, principal, serve
from codey.api.native.protocol import (
    ChatBody,
    ChatResponse,
    CompleteBody,
    CompleteResponse,
    GenerateBody,
    GenerateResponse,
)
from codey.errors import Forbidden
from codey.gateway.auth import Principal
from codey.gateway.pipeline import Answer
from codey.gateway.report import usage_report
from codey.runtime import Runtime

router = APIRouter(prefix="/api/v1/codey", tags=["native"])
Caller = Annotated[Principal, Depends(principal)]


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@router.post("/generate", response_model=GenerateResponse)
async def generate(body: GenerateBody, request: Request, who: Caller) -> JSONResponse:
    """Generate a complete function or class."""
    service = _runtime(request).generation
    call = new_call(
        request,
        who,
        "generation",
        "native",
        service.backend.model_id,
        input_text=body.prompt + (body.context or "") + "".join(body.requirements),
        cache_request=body.model_dump(),
        deterministic=body.temperature == 0,
    )

    async def work() -> Answer:
        result = await service.generate(body.to_request())
        rendered = GenerateResponse.of(result).model_dump()
        return Answer(rendered, result.prompt_tokens, result.completion_tokens, result.code)

    return await serve(request, call, work, native=True)


@router.post("/chat", response_model=ChatResponse)
async def chat(body: ChatBody, request: Request, who: Caller) -> JSONResponse:
    """One turn of a conversation about code; conversations are kept by id."""
    service = _runtime(request).chat
    history = "".join(m.content for m in body.conversation_history)
    # A conversation changes with every turn, so chat answers are never cached.
    call = new_call(
        request,
        who,
        "chat",
        "native",
        service.backend.model_id,
        input_text=body.message + (body.context or "") + history,
    )

    async def work() -> Answer:
        result = await service.chat(body.to_request())
        rendered = ChatResponse.of(result).model_dump()
        return Answer(rendered, result.prompt_tokens, result.completion_tokens, result.response)

    return await serve(request, call, work, native=True)


@router.post("/complete", response_model=CompleteResponse)
async def complete(body: CompleteBody, request: Request, who: Caller) -> JSONResponse:
    """Ranked suggestions for the code between prefix and suffix."""
    service = _runtime(request).completion
    call = new_call(
        request,
        who,
        "completion",
        "native",
        service.backend.model_id,
        input_text=body.prefix + body.suffix + (body.context or ""),
        cache_request=body.model_dump(),
    )

    async def work() -> Answer:
        result = await service.complete(body.to_request())
        rendered = CompleteResponse.of(result).model_dump()
        text = "".join(s.completion for s in result.suggestions)
        return Answer(rendered, result.prompt_tokens, result.completion_tokens, text)

    return await serve(request, call, work, native=True)


@router.get("/usage")
async def usage(
    request: Request,
    who: Caller,
    day: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
    principal_name: Annotated[str | None, Query(alias="principal")] = None,
) -> dict[str, Any]:
    """Today's usage per service against quota (`day` and, for admins, `principal` choose)."""
    gateway = gateway_of(request)
    subject = who
    if principal_name is not None and principal_name != who.name:
        if not who.admin:
            raise Forbidden("Only an admin key may read another principal's usage.")
        subject = gateway.keyring.named(principal_name)
    return await usage_report(gateway, subject, day)
