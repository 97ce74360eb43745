"""Concurrency, disconnects, overload and shutdown against real server processes on the
scripted fake (tests/fake_script.py), whose slow answers hold their deployment as a long
decode holds the engine."""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from codey.backends.fake import Rule
from tests.api.conftest import Server, start_server
from tests.fake_script import SLOW, fake_config, write_script

NATIVE = "/api/v1/codey"


def mixed_requests() -> list[tuple[str, dict[str, object], str]]:
    """16 deterministic requests over the three services; the last item says what to read."""
    requests: list[tuple[str, dict[str, object], str]] = []
    for n in range(6):
        requests.append(
            (
                f"{NATIVE}/generate",
                {
                    "prompt": f"a function that returns {n} * {n}",
                    "max_tokens": 24,
                    "temperature": 0,
                },
                "generated_code",
            )
        )
    for n in range(5):
        requests.append(
            (
                "/v1/chat/completions",
                {
                    "model": "codey",
                    "max_tokens": 12,
                    "temperature": 0,
                    "messages": [
                        {
                            "role": "user",
                            "content": f"What is {n} plus {n}? Answer with the number.",
                        }
                    ],
                },
                "choices",
            )
        )
    for n in range(5):
        requests.append(
            (
                f"{NATIVE}/complete",
                {
                    "prefix": f"def times_{n}(x):\n    return ",
                    "max_completions": 1,
                    "max_tokens": 12,
                },
                "suggestions",
            )
        )
    return requests


def answer(response: httpx.Response, key: str) -> str:
    assert response.status_code == 200, response.text
    value = response.json()[key]
    return json.dumps(value if key != "choices" else value[0]["message"]["content"])


def test_16_concurrent_mixed_clients_get_their_own_answers(fake_server: Server) -> None:
    requests = mixed_requests()
    fresh = {"cache-control": "no-cache, no-store"}  # every answer from the backend
    with httpx.Client(base_url=fake_server.url, timeout=300, headers=fresh) as client:
        expected = [answer(client.post(path, json=body), key) for path, body, key in requests]
        assert len(set(expected)) == len(expected)  # a mixed-up answer would show

        def send(item: tuple[str, dict[str, object], str]) -> str:
            path, body, key = item
            return answer(client.post(path, json=body), key)

        with ThreadPoolExecutor(max_workers=16) as pool:
            got = list(pool.map(send, requests))
        assert got == expected
        assert client.get("/readyz").status_code == 200


def test_a_disconnected_stream_frees_the_engine(fake_server: Server) -> None:
    # "narrow" takes one request at a time: while the long answer held it, the next is a 503
    long_chat = {
        "model": "narrow",
        "max_tokens": 600,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "user", "content": "Write a long essay about compilers."}],
    }
    with httpx.Client(base_url=fake_server.url, timeout=60) as client:
        with client.stream("POST", "/v1/chat/completions", json=long_chat) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    break  # got the first token; leaving the block closes the connection
        started = time.perf_counter()
        quick = {
            "model": "narrow",
            "max_tokens": 1,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        with client.stream("POST", "/v1/chat/completions", json=quick) as response:
            first_byte = next(response.iter_bytes())
            waited = time.perf_counter() - started
        assert first_byte.startswith(b"data:")
        assert waited < 1.0, f"the next request waited {waited:.2f} s"


def test_a_client_that_gives_up_on_a_plain_request_frees_the_engine(
    fake_server: Server,
) -> None:
    # on "narrow", the one slot is free again only if the abandoned request was cancelled
    body = {
        "model": "narrow",
        "prompt": "a long, fully documented HTTP server",
        "max_tokens": 600,
        "temperature": 0,
    }
    with (
        httpx.Client(base_url=fake_server.url, timeout=1.0) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post("/v1/completions", json=body)
    with httpx.Client(base_url=fake_server.url, timeout=60) as client:
        started = time.perf_counter()
        response = client.post(
            "/v1/completions", json={"model": "narrow", "prompt": "x = ", "max_tokens": 2}
        )
        assert response.status_code == 200, response.text
        assert time.perf_counter() - started < 2.0


def test_overload_answers_503_with_retry_after_and_shutdown_finishes_work(
    tmp_path: Path,
) -> None:
    # a deployment that takes two requests at a time, each answer slow enough to overlap
    script = write_script(
        tmp_path / "script.json",
        [
            Rule("def f(x):", " return x * 2" * 8, delay=SLOW),
            Rule("a stack class", "```python\nclass Stack:\n    pass\n```\n", delay=0.1),
        ],
    )
    config = fake_config(tmp_path / "codey.toml", script, busy="max_concurrency = 2")
    server = start_server(tmp_path, CODEY_CONFIG=str(config))
    try:
        body = {"prefix": "def f(x):\n    ", "max_completions": 1, "max_tokens": 48}
        with (
            httpx.Client(base_url=server.url, timeout=120) as client,
            ThreadPoolExecutor(max_workers=8) as pool,
        ):
            responses = list(
                pool.map(lambda _: client.post(f"{NATIVE}/complete", json=body), range(8))
            )
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) == {200, 503}, statuses
        assert statuses.count(200) >= 2
        for refused in (r for r in responses if r.status_code == 503):
            assert int(refused.headers["retry-after"]) >= 1
            assert "at its 2 requests in flight" in refused.json()["error"]["message"]

        # SIGTERM while a request runs: the request still gets its answer.
        results: list[httpx.Response] = []

        def slow_request() -> None:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                results.append(
                    client.post(
                        f"{NATIVE}/generate",
                        json={"prompt": "a stack class", "max_tokens": 64, "temperature": 0},
                    )
                )

        worker = threading.Thread(target=slow_request)
        worker.start()
        time.sleep(0.5)
        assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises it
        worker.join()
        assert results and results[0].status_code == 200
        assert results[0].json()["generated_code"]
    finally:
        server.stop(signal.SIGKILL)
