"""/api/v1/codey: generate, chat, complete and usage."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from codey.api.calls import gateway_of, principal, serve
from codey.api.native.protocol import (
    ChatBody,
    ChatResponse,
    CompleteBody,
    CompleteResponse,
    Day,
    GenerateBody,
    GenerateResponse,
)
from codey.errors import Forbidden
from codey.gateway.auth import Principal
from codey.gateway.report import usage_report

router = APIRouter(prefix="/api/v1/codey", tags=["native"])
Caller = Annotated[Principal, Depends(principal)]


@router.post("/generate", response_model=GenerateResponse)
async def generate(body: GenerateBody, request: Request, who: Caller) -> JSONResponse:
    """Generate a complete function or class."""
    return await serve(request, who, body)


@router.post("/chat", response_model=ChatResponse)
async def chat(body: ChatBody, request: Request, who: Caller) -> JSONResponse:
    """One turn of a conversation about code; conversations are kept by id."""
    return await serve(request, who, body)


@router.post("/complete", response_model=CompleteResponse)
async def complete(body: CompleteBody, request: Request, who: Caller) -> JSONResponse:
    """Ranked suggestions for the code between prefix and suffix."""
    return await serve(request, who, body)


@router.get("/usage")
async def usage(
    request: Request,
    who: Caller,
    day: Day | None = None,
    principal_name: Annotated[str | None, Query(alias="principal")] = None,
) -> dict[str, Any]:
    """Today's usage per service against quota (`day` and, for admins, `principal` choose)."""
    gateway = gateway_of(request)
    subject = who
    if principal_name is not None and principal_name != who.name:
        if not who.admin:
            raise Forbidden("Only an admin key may read another principal's usage.")
        subject = gateway.keyring.named(principal_name)
    return await usage_report(gateway, subject, day.isoformat() if day else None)
