"""A small OpenAI-compatible upstream that misbehaves on cue, for the router's tests.

A raw asyncio HTTP/1.1 server (one request per connection) in a thread of its own, so that it
can do what a well-behaved framework never would: hang before answering, or drop the connection
in the middle of a stream. Each request takes the next scripted fault, then it answers normally.
Its answers are its own: the text echoes the last message's words, and token counts are the
number of words it read and wrote.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

Fault = tuple[str, float]
"""('ok', 0), ('status', 429 or 500...), ('retry_after', seconds for a 429), ('hang', seconds),
('drop', tokens sent before the connection is cut)."""


@dataclass
class Seen:
    path: str
    body: dict[str, Any]
    at: float


@dataclass
class FaultUpstream:
    port: int = 0
    faults: deque[Fault] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _stop(self) -> None:
        self._server.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            path = head.split(" ", 2)[1]
            length = next(
                (
                    int(line.split(":", 1)[1])
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length:")
                ),
                0,
            )
            body = json.loads(await reader.readexactly(length)) if length else {}
            self.seen.append(Seen(path, body, time.monotonic()))
            kind, value = self.faults.popleft() if self.faults else ("ok", 0)
            await self._answer(writer, path, body, kind, value)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(
        self, writer: asyncio.StreamWriter, path: str, body: dict[str, Any], kind: str, value: float
    ) -> None:
        if kind == "hang":
            await asyncio.sleep(value)
        if kind == "status":
            _respond(writer, int(value), {"error": {"message": f"scripted {int(value)}"}})
            return
        if kind == "retry_after":
            error = {"error": {"message": "slow down"}}
            _respond(writer, 429, error, {"Retry-After": f"{value:g}"})
            return
        if path.endswith("/models"):
            _respond(writer, 200, {"object": "list", "data": [{"id": "m", "object": "model"}]})
            return
        if path.endswith("/tokenize"):
            _respond(writer, 404, {"error": {"message": "no tokenizer here"}})
            return
        words = _words(body)
        reply = ["Sure:", *words[-3:], "done."]
        usage = {"prompt_tokens": len(words), "completion_tokens": len(reply)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        chat = path.endswith("/chat/completions")
        if not body.get("stream"):
            if kind == "drop":
                return  # the connection closes with no answer at all
            text = " ".join(reply)
            choice = {"index": 0, "finish_reason": "stop"}
            choice.update({"message": {"role": "assistant", "content": text}} if chat else {})
            choice.update({} if chat else {"text": text})
            _respond(writer, 200, {"object": "x", "choices": [choice], "usage": usage})
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        )
        cut = int(value) if kind == "drop" else None
        for index, word in enumerate(reply):
            if cut is not None and index == cut:
                await writer.drain()
                writer.transport.abort()  # mid-stream: no [DONE], no clean close
                return
            piece = word if index == 0 else f" {word}"
            delta = {"delta": {"content": piece}} if chat else {"text": piece}
            _event(writer, {"choices": [{"index": 0, **delta, "finish_reason": None}]})
            await writer.drain()
            await asyncio.sleep(0.01)
        _event(writer, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        _event(writer, {"choices": [], "usage": usage})
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()


def _words(body: dict[str, Any]) -> list[str]:
    if "messages" in body:
        return " ".join(m.get("content") or "" for m in body["messages"]).split()
    return f"{body.get('prompt', '')} {body.get('suffix') or ''}".split()


def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    data = json.dumps(body).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(
        f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(data)}"
        f"\r\nconnection: close\r\n{extra}\r\n".encode()
        + data
    )


def _event(writer: asyncio.StreamWriter, payload: dict[str, Any]) -> None:
    writer.write(f"data: {json.dumps(payload)}\n\n".encode())
