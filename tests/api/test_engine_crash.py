"""A native crash of the engine process, seen through the HTTP API: every request in hand gets
503 and Retry-After in its dialect's shape (a started stream an error event), each has its
ledger row, the server stays up, and the engine comes back by itself."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import Server, start_server

pytestmark = pytest.mark.model

VERTEX = "/v1/projects/p/locations/us-central1/publishers/google/models/code-bison@002"
ESSAY = "Write a long, detailed essay about sorting algorithms, with code for each one."
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("native", "/api/v1/codey/generate", {"prompt": ESSAY, "max_tokens": 300}),
    ("native", "/api/v1/codey/chat", {"message": ESSAY, "max_tokens": 300}),
    ("native", "/api/v1/codey/complete", {"prefix": "def quicksort(xs):\n    ", "suffix": ""}),
    (
        "openai",
        "/v1/completions",
        {"model": "codey", "prompt": "# sorting\n", "max_tokens": 300, "stream": True},
    ),
    (
        "openai",
        "/v1/chat/completions",
        {"model": "codey", "messages": [{"role": "user", "content": ESSAY}], "max_tokens": 300},
    ),
    ("vertex", VERTEX + ":predict", {"instances": [{"prefix": ESSAY}]}),
    (
        "vertex",
        VERTEX + ":serverStreamingPredict",
        {"inputs": [{"structVal": {"prefix": {"stringVal": [ESSAY]}}}]},
    ),
]
FIRST = (
    "openai",
    "/v1/chat/completions",
    {
        "model": "codey",
        "messages": [{"role": "user", "content": ESSAY}],
        "max_tokens": 300,
        "stream": True,
    },
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path)
    yield server
    server.stop()


def engine_of(client: httpx.Client) -> dict[str, Any]:
    engine: dict[str, Any] = client.get("/readyz").json()["engine"]
    return engine


def send(client: httpx.Client, request: tuple[str, str, dict[str, Any]], out: list[Any]) -> None:
    dialect, path, body = request
    with client.stream("POST", path, json=body, headers={"cache-control": "no-cache"}) as r:
        text = "".join(r.iter_text())
    out.append((dialect, path, r.status_code, dict(r.headers), text))


def test_a_segfault_in_the_engine_costs_only_the_requests_in_hand(server: Server) -> None:
    client = httpx.Client(base_url=server.url, timeout=300)
    pid = engine_of(client)["pid"]
    results: list[Any] = []
    # One stream is under way before the crash; the others are batched beside it or wait.
    streaming = client.stream("POST", FIRST[1], json=FIRST[2])
    response = streaming.__enter__()
    events = response.iter_lines()
    assert next(events).startswith("data: ")
    threads = [threading.Thread(target=send, args=(client, r, results)) for r in REQUESTS]
    for t in threads:
        t.start()
    time.sleep(2)
    os.kill(pid, signal.SIGSEGV)
    # Not ready while the engine restarts, and /readyz says why.
    deadline = time.monotonic() + 10
    while (ready := client.get("/readyz")).status_code == 200:
        assert time.monotonic() < deadline, "never saw the engine down"
        time.sleep(0.02)
    down = ready.json()
    assert down["checks"]["engine"] is False and down["engine"]["state"] == "restarting"
    assert "SIGSEGV" in down["engine"]["reason"]
    rest = list(events)
    streaming.__exit__(None, None, None)
    for t in threads:
        t.join(120)

    # The server, its health, metrics and dashboard stay up while the engine restarts.
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/").status_code == 200

    # The stream that had started ends with an OpenAI error event, then [DONE].
    data = [line[6:] for line in rest if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2])["error"]["code"] == "engine_crashed"

    assert len(results) == len(REQUESTS)
    answered = 0
    for dialect, path, status, headers, text in results:
        streamed = text.startswith("data:") or path.endswith(":serverStreamingPredict")
        if status == 200 and streamed:
            # a stream under way when the engine died ends with the dialect's error in it
            assert "SIGSEGV" in text and "engine" in text, (path, text)
            continue
        if status == 200:  # a short answer batched beside the others, done before the crash
            answered += 1
            continue
        assert status == 503, (path, status, text)
        assert int(headers["retry-after"]) >= 1
        body = json.loads(text)
        if dialect == "native":
            assert body["success"] is False and body["error"]["type"] == "engine_crashed"
        elif dialect == "openai":
            assert body["error"]["code"] == "engine_crashed"
        else:
            assert body["error"]["status"] == "UNAVAILABLE" and body["error"]["code"] == 503
        assert "SIGSEGV" in text

    # Back by itself: ready again, counted, and answering.
    deadline = time.monotonic() + 120
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").text
        time.sleep(0.2)
    engine = engine_of(client)
    assert engine["pid"] != pid and engine["restarts"] == 1 and engine["state"] == "ready"
    metrics = {
        s.name: s.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for s in family.samples
    }
    assert metrics["codey_engine_restarts_total"] == 1
    assert metrics["codey_engine_up"] == 1
    again = client.post("/api/v1/codey/complete", json={"prefix": "import os\nos.", "suffix": ""})
    assert again.status_code == 200, again.text

    # One ledger row per request, none lost: those the crash cut short as 503 (streams too),
    # those answered before it and the one after the restart as 200.
    db = sqlite3.connect(Path(server.log).parent / "codey.db")
    statuses = [s for (s,) in db.execute("SELECT status FROM ledger ORDER BY id")]
    db.close()
    crashed = len(REQUESTS) + 1 - answered
    assert sorted(statuses) == [200] * (1 + answered) + [503] * crashed, statuses
    assert crashed >= 2  # the first stream and the long generations at least
