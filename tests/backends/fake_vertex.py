"""A local stand-in for Vertex AI's Gemini REST API, which cannot be reached from here.

It speaks the wire format google-genai 2.34.0 uses with `vertexai=True` (read in its
`_api_client.py` and `models.py`): `POST /v1beta1/projects/{p}/locations/{l}/publishers/google/
models/{m}:generateContent`, `:streamGenerateContent?alt=sse` (one GenerateContentResponse per
`data:` event) and `:countTokens`, camelCase JSON, and Google's error body
`{"error": {"code", "message", "status"}}`. It also serves `POST /token`, the OAuth 2.0 JWT-bearer
grant of a service-account key whose `token_uri` points here, so that google-auth's real flow
runs: the assertion is checked against the key's public half, and the model endpoints answer 401
to any bearer token this server did not issue.

Answers are scripted (`script(Reply(...))`, `script(Failure(...))`), else "ok". Token counts are
made from what it reads and writes: word pieces (a word or a punctuation mark, with the
whitespace before it), so a reply's pieces spell its text exactly, like a tokenizer's.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from google.auth import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
_PIECE = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")


def pieces(text: str) -> list[str]:
    """The word pieces of `text`; joined, they give `text` back."""
    return _PIECE.findall(text)


@dataclass(frozen=True)
class Reply:
    """One answer: `text` for the first candidate, `others` for candidates 2..n."""

    text: str = "ok"
    others: tuple[str, ...] = ()
    logprobs: tuple[float, ...] | None = None
    """The log-probability of each piece of `text`; unset gives -0.1 per character."""
    finish_reason: str = "STOP"
    delay: float = 0.0
    """Seconds to wait before answering (before the first event of a stream)."""


@dataclass(frozen=True)
class Failure:
    """An error answer; the wait it asks for in a Retry-After header or a RetryInfo detail."""

    status: int
    message: str = "scripted failure"
    retry_after: str | None = None
    retry_delay: str | None = None
    """google.rpc.RetryInfo's retryDelay, a JSON Duration such as "3s"."""


@dataclass
class Seen:
    """A request as it arrived."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeVertex:
    """The server; use as a context manager. `url` is the base URL to give the SDK."""

    public_key: str | None = None
    """PEM public key that must have signed the token requests' assertions."""
    reject_logprobs: bool = False
    """Answer 400, as models without log-probabilities do, to requests that ask for them."""
    seen: list[Seen] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    _script: deque[Reply | Failure] = field(default_factory=deque)

    def __enter__(self) -> FakeVertex:
        model = "/v1beta1/projects/{p}/locations/{l}/publishers/{pub}/models/{call}"
        routes = [
            Route("/token", self._token, methods=["POST"]),
            Route(model, self._model, methods=["POST"]),
        ]
        config = uvicorn.Config(
            Starlette(routes=routes), host="127.0.0.1", port=0, log_level="error"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the fake Vertex AI server did not start")
            self._thread.join(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *answers: Reply | Failure) -> None:
        """Answers for the next model requests, in order."""
        self._script.extend(answers)

    def reset(self) -> None:
        """Forget requests, issued tokens and scripts, as if just started."""
        self.reject_logprobs = False
        for record in (self.seen, self.claims, self.tokens, self._script):
            record.clear()

    def model_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path != "/token"]

    async def _token(self, request: Request) -> Response:
        # The grant is form-encoded; parsed here to need no multipart library.
        form = dict(parse_qsl((await request.body()).decode()))
        self.seen.append(Seen("POST", "/token", "", dict(request.headers), form))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            # google-auth always addresses the assertion to Google's endpoint, whatever token_uri.
            claims = jwt.decode(
                str(form.get("assertion")),
                certs=self.public_key,
                verify=self.public_key is not None,
                audience=GOOGLE_TOKEN_URI,
            )
        except ValueError as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, 400)
        self.claims.append(claims)
        token = f"ya29.fake-{secrets.token_hex(8)}"
        self.tokens.add(token)
        return JSONResponse({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    async def _model(self, request: Request) -> Response:
        body = await request.json()
        seen = Seen("POST", request.url.path, request.url.query, dict(request.headers), body)
        self.seen.append(seen)
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.tokens:
            return _error(401, "Request had invalid authentication credentials.")
        model, _, method = request.path_params["call"].partition(":")
        if method == "countTokens":
            text = _request_text(body)
            billable = len("".join(text.split()))  # Vertex bills characters, not whitespace
            return JSONResponse(
                {"totalTokens": len(pieces(text)), "totalBillableCharacters": billable}
            )
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(404, f"Method {method} not found.")
        config = body.get("generationConfig") or {}
        if self.reject_logprobs and config.get("responseLogprobs"):
            return _error(400, "Logprobs is not supported for the current model.")
        answer = self._script.popleft() if self._script else Reply()
        if isinstance(answer, Failure):
            headers = {"Retry-After": answer.retry_after} if answer.retry_after else None
            return _error(answer.status, answer.message, headers, answer.retry_delay)
        await asyncio.sleep(answer.delay)
        response = _response(answer, body, model)
        if method == "generateContent":
            return JSONResponse(response)
        return StreamingResponse(_events(response), media_type="text/event-stream")


def _error(
    status: int, message: str, headers: dict[str, str] | None = None, delay: str | None = None
) -> JSONResponse:
    error: dict[str, Any] = {"code": status, "message": message, "status": STATUS[status]}
    if delay is not None:
        info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
        error["details"] = [info]
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _request_text(body: dict[str, Any]) -> str:
    turns = [body.get("systemInstruction") or {}, *(body.get("contents") or ())]
    return "\n".join(p.get("text", "") for turn in turns for p in turn.get("parts") or ())


def _response(reply: Reply, body: dict[str, Any], model: str) -> dict[str, Any]:
    """A GenerateContentResponse for `reply`, cut by maxOutputTokens and stopSequences."""
    config = body.get("generationConfig") or {}
    texts = (reply.text, *reply.others)
    candidates = [
        _candidate(index, texts[index % len(texts)], reply, config)
        for index in range(int(config.get("candidateCount", 1)))
    ]
    written = sum(c.pop("_pieces") for c in candidates)
    usage = {"promptTokenCount": len(pieces(_request_text(body))), "candidatesTokenCount": written}
    usage["totalTokenCount"] = usage["promptTokenCount"] + written
    return {"candidates": candidates, "usageMetadata": usage, "modelVersion": model}


def _candidate(index: int, text: str, reply: Reply, config: dict[str, Any]) -> dict[str, Any]:
    words, finish = pieces(text), reply.finish_reason
    for stop in config.get("stopSequences") or ():
        if stop in text:
            words, finish = pieces(text[: text.index(stop)]), "STOP"
    if len(words) > config.get("maxOutputTokens", len(words)):
        words, finish = words[: config["maxOutputTokens"]], "MAX_TOKENS"
    candidate: dict[str, Any] = {
        "index": index,
        "content": {"role": "model", "parts": [{"text": "".join(words)}]},
        "finishReason": finish,
        "_pieces": len(words),
    }
    if config.get("responseLogprobs"):
        given = reply.logprobs if index == 0 and reply.logprobs is not None else None
        scores = list(given or [-0.1 * len(w.strip()) for w in words])[: len(words)]
        chosen = [{"token": w, "logProbability": s} for w, s in zip(words, scores, strict=True)]
        result: dict[str, Any] = {"chosenCandidates": chosen}
        if config.get("logprobs"):
            result["topCandidates"] = [_top(c, int(config["logprobs"])) for c in chosen]
        candidate["logprobsResult"] = result
        candidate["avgLogprobs"] = sum(scores) / len(scores) if scores else 0.0
    return candidate


def _top(chosen: dict[str, Any], count: int) -> dict[str, Any]:
    """The chosen token and `count - 1` less likely ones, most likely first."""
    others = [
        {"token": f"<alt{k}>", "logProbability": chosen["logProbability"] - k}
        for k in range(1, count)
    ]
    return {"candidates": [chosen, *others]}


async def _events(response: dict[str, Any]) -> AsyncIterator[bytes]:
    """Server-sent events of the response in chunks of two pieces, usage on every chunk."""
    for chunk in _chunks(response):
        yield b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n"


def _chunks(response: dict[str, Any]) -> Iterator[dict[str, Any]]:
    (candidate,) = response["candidates"]
    text = candidate["content"]["parts"][0]["text"]
    words, chosen = pieces(text), (candidate.get("logprobsResult") or {}).get("chosenCandidates")
    usage = response["usageMetadata"]
    for start in range(0, max(len(words), 1), 2):
        last = start + 2 >= len(words)
        part: dict[str, Any] = {
            "index": 0,
            "content": {"role": "model", "parts": [{"text": "".join(words[start : start + 2])}]},
        }
        if chosen is not None:
            part["logprobsResult"] = {"chosenCandidates": chosen[start : start + 2]}
        if last:
            part["finishReason"] = candidate["finishReason"]
        running = usage if last else {"promptTokenCount": usage["promptTokenCount"]}
        yield {
            "candidates": [part],
            "usageMetadata": running,
            "modelVersion": response["modelVersion"],
        }
