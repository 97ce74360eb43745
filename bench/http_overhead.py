"""Time the HTTP layer adds per endpoint over calling the same service in-process.

    .venv/bin/python bench/http_overhead.py [--repeat 7] [--max-tokens 32] [--json out.json]

One runtime (one loaded model) serves both paths: uvicorn runs the app on a thread of this
process, and each endpoint's request is alternated with the equivalent direct service call,
same prompt, temperature 0, so that both see the same engine and the same KV-cache state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table

from codey.api.app import create_app
from codey.backends.base import Message
from codey.config import load_settings
from codey.runtime import Runtime
from codey.services.chat import ChatRequest
from codey.services.completion import CompletionRequest
from codey.services.generation import GenerationRequest
from codey.services.sampling import Sampling

VERTEX = "/v1/projects/p/locations/l/publishers/google/models"
PROMPT = "a function that checks whether a string is a palindrome"
PREFIX = "def is_palindrome(s):\n    "


def cases(
    rt: Runtime, n: int
) -> list[tuple[str, str, dict[str, Any], Callable[[], Awaitable[Any]]]]:
    greedy = Sampling(max_tokens=n, temperature=0)
    chat_messages = [Message("user", "What does Python's zip do? One sentence.")]
    return [
        ("native generate", "/api/v1/codey/generate",
         {"prompt": PROMPT, "max_tokens": n, "temperature": 0},
         lambda: rt.generation.generate(GenerationRequest(PROMPT, max_tokens=n, temperature=0))),
        ("native complete", "/api/v1/codey/complete",
         {"prefix": PREFIX, "max_completions": 1, "max_tokens": n},
         lambda: rt.completion.complete(
             CompletionRequest(PREFIX, max_completions=1, max_tokens=n))),
        ("native chat", "/api/v1/codey/chat",
         {"message": "What does Python's zip do? One sentence.", "max_tokens": n, "temperature": 0},
         lambda: rt.chat.chat(ChatRequest("What does Python's zip do? One sentence.",
                                          max_tokens=n, temperature=0))),
        ("openai chat", "/v1/chat/completions",
         {"model": "codey", "max_tokens": n, "temperature": 0,
          "messages": [{"role": "user", "content": chat_messages[0].content}]},
         lambda: rt.chat.reply(chat_messages, greedy)),
        ("openai completions", "/v1/completions",
         {"model": "codey", "prompt": PREFIX, "suffix": "\n", "max_tokens": n, "temperature": 0},
         lambda: rt.completion.raw(PREFIX, "\n", greedy)),
        ("vertex code-gecko", f"{VERTEX}/code-gecko:predict",
         {"instances": [{"prefix": PREFIX}], "parameters": {"maxOutputTokens": n}},
         lambda: rt.completion.complete(CompletionRequest(PREFIX, language="", max_completions=1,
                                                          max_tokens=n))),
    ]  # fmt: skip


def serve(app: Any, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    settings = load_settings()
    runtime = Runtime.start(settings)
    server = serve(create_app(settings, runtime), args.port)
    rows = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{args.port}", timeout=300) as http:
        for name, path, body, direct in cases(runtime, args.max_tokens):
            await direct()  # warm the KV cache for this prompt
            http_times, direct_times = [], []
            for _ in range(args.repeat):
                started = time.perf_counter()
                response = await http.post(path, json=body)
                http_times.append(time.perf_counter() - started)
                response.raise_for_status()
                started = time.perf_counter()
                await direct()
                direct_times.append(time.perf_counter() - started)
            h, d = statistics.median(http_times), statistics.median(direct_times)
            rows.append({"endpoint": name, "direct_ms": round(d * 1000, 1),
                         "http_ms": round(h * 1000, 1), "added_ms": round((h - d) * 1000, 1),
                         "ratio": round(h / d, 3)})  # fmt: skip
    server.should_exit = True

    table = Table("endpoint", "in-process ms", "over HTTP ms", "added ms", "ratio")
    for r in rows:
        table.add_row(r["endpoint"], str(r["direct_ms"]), str(r["http_ms"]), str(r["added_ms"]),
                      f"{r['ratio']:.3f}")  # fmt: skip
    Console(width=120).print(table)
    if args.json:
        machine = {"platform": platform.platform(), "cpus": __import__("os").cpu_count()}
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
