"""/api/v1/codey: generate, chat, complete and usage."""

from __future__ import annotations

from fastapi import APIRouter, Request

from codey.api.calls import call_service
from codey.api.native.protocol import (
    ChatBody,
    ChatResponse,
    CompleteBody,
    CompleteResponse,
    GenerateBody,
    GenerateResponse,
)
from codey.runtime import Runtime

router = APIRouter(prefix="/api/v1/codey", tags=["native"])


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@router.post("/generate", response_model=GenerateResponse)
async def generate(body: GenerateBody, request: Request) -> GenerateResponse:
    """Generate a complete function or class."""
    service = _runtime(request).generation
    result = await call_service(request, "generation", service.generate(body.to_request()))
    return GenerateResponse.of(result)


@router.post("/chat", response_model=ChatResponse)
async def chat(body: ChatBody, request: Request) -> ChatResponse:
    """One turn of a conversation about code; conversations are kept by id."""
    service = _runtime(request).chat
    result = await call_service(request, "chat", service.chat(body.to_request()))
    return ChatResponse.of(result)


@router.post("/complete", response_model=CompleteResponse)
async def complete(body: CompleteBody, request: Request) -> CompleteResponse:
    """Ranked suggestions for the code between prefix and suffix."""
    service = _runtime(request).completion
    result = await call_service(request, "completion", service.complete(body.to_request()))
    return CompleteResponse.of(result)


@router.get("/usage")
async def usage(request: Request) -> dict[str, object]:
    """Requests and tokens per service since the server started."""
    return request.app.state.usage.snapshot()
