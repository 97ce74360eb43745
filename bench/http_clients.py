"""CPU time per request of the two HTTP clients codey could call upstreams with, in one run.

    .venv/bin/python bench/http_clients.py --requests 3000

Starts the instant upstream (bench/fixtures/instant_upstream.py) in its own process, then sends
the same chat-completion POST through httpx and through aiohttp, each with one pooled client,
one request at a time and then 16 at once, and reports the client process's CPU time per
request (time.process_time), which is what a gateway pays per upstream call.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

FIXTURES = Path(__file__).parent / "fixtures"
BODY = {"model": "instant", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
Send = Callable[[], Awaitable[None]]


async def cpu_ms_per_request(send: Send, requests: int, concurrency: int) -> float:
    async def worker(count: int) -> None:
        for _ in range(count):
            await send()

    for _ in range(50):  # warm the pool
        await send()
    started = time.process_time()
    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / requests * 1000


async def measure(url: str, requests: int) -> dict[str, dict[int, float]]:
    results: dict[str, dict[int, float]] = {"httpx": {}, "aiohttp": {}}
    for concurrency in (1, 16):
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16)) as client:

            async def with_httpx(client: httpx.AsyncClient = client) -> None:
                (await client.post(url, json=BODY)).json()

            results["httpx"][concurrency] = await cpu_ms_per_request(
                with_httpx, requests, concurrency
            )
        connector = aiohttp.TCPConnector(limit=16)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def with_aiohttp(session: aiohttp.ClientSession = session) -> None:
                async with session.post(url, json=BODY) as response:
                    await response.json()

            results["aiohttp"][concurrency] = await cpu_ms_per_request(
                with_aiohttp, requests, concurrency
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    upstream = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(FIXTURES), "instant_upstream:app",
         "--port", str(port), "--loop", "uvloop", "--http", "httptools",
         "--log-level", "warning", "--no-access-log"],
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        for _ in range(100):
            try:
                httpx.post(url, json=BODY)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        results = asyncio.run(measure(url, args.requests))
    finally:
        upstream.terminate()
        upstream.wait()
    print("client   CPU ms/request at concurrency 1   at 16")
    for client, by_concurrency in results.items():
        print(f"{client:8} {by_concurrency[1]:29.3f} {by_concurrency[16]:7.3f}")
    print(f"httpx / aiohttp: {results['httpx'][1] / results['aiohttp'][1]:.1f}x at 1, "
          f"{results['httpx'][16] / results['aiohttp'][16]:.1f}x at 16")  # fmt: skip


if __name__ == "__main__":
    main()
