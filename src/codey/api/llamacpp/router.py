"""/infill (and /v1/infill): llama.cpp's server's fill-in-the-middle route, for the editor
plugins that speak it (llama.vscode, llama.vim)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from codey.api.calls import call_of, gateway_of, principal, stream, until_disconnect
from codey.api.errors import error_body, from_codey
from codey.api.llamacpp.protocol import InfillRequest, rendered
from codey.backends.base import Delta
from codey.errors import CodeyError
from codey.gateway.auth import Principal

router = APIRouter(tags=["llama.cpp"])
Caller = Annotated[Principal, Depends(principal)]


@router.post("/infill", response_model=None)
@router.post("/v1/infill", response_model=None)
async def infill(
    body: InfillRequest, request: Request, who: Caller
) -> JSONResponse | StreamingResponse:
    """Fill in the code at the cursor, with chunks of other files as context."""
    if body.stream:
        return await _sse(request, who, body)
    gateway = gateway_of(request)
    answer, cached = await until_disconnect(request, gateway.serve(call_of(request, who, body)))
    headers = {"x-codey-cache": "hit" if cached else "miss"}
    return JSONResponse(rendered(answer.body), headers=headers)


async def _sse(request: Request, who: Principal, body: InfillRequest) -> StreamingResponse:
    """llama.cpp's stream: a `data:` event per piece of text, then the whole result with
    `stop: true`; no [DONE]."""
    deltas = await stream(request, who, body)

    async def events() -> AsyncIterator[str]:
        text, count = "", 0
        last = Delta("")
        try:
            async with aclosing(deltas):
                async for delta in deltas:
                    text, count, last = text + delta.text, count + (delta.token is not None), delta
                    if delta.text:
                        yield _event({"index": 0, "content": delta.text, "tokens": [],
                                      "stop": False, "id_slot": -1,
                                      "tokens_predicted": count})  # fmt: skip
        except CodeyError as exc:
            yield _event(error_body(from_codey(exc, 0), "openai"))
            return
        yield _event(
            {
                "index": 0,
                "content": "",
                "tokens": [],
                "id_slot": -1,
                "stop": True,
                "tokens_predicted": last.completion_tokens,
                "tokens_evaluated": last.prompt_tokens,
                "has_new_line": "\n" in text,
                "stop_type": {"stop": "eos", "length": "limit"}.get(
                    last.finish_reason or "", "none"
                ),
                "tokens_cached": last.cached_tokens,
            }
        )

    headers = {"Cache-Control": "no-cache", "x-codey-cache": "miss"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"
