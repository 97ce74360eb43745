"""One codey in front of two engines on loopback (two `codey serve` processes on the scripted
fake, tests/fake_script.py, speaking the OpenAI dialect): load spreads across both, a killed
engine costs no request that had not started streaming, its breaker opens, and it comes back
when restarted. Also a misbehaving
upstream seen through the HTTP API: a stream cut short ends in an error event and a ledger row."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from codey.backends.base import ChatPrompt, InfillPrompt, Message, SamplingParams
from codey.backends.fake import FakeBackend
from codey.backends.openai import OpenAIBackend
from codey.config import Deployment, ResilienceSettings
from tests.api.conftest import Server, start_server
from tests.fake_script import CONTEXT_LENGTH, fake_config, write_script
from tests.fault_upstream import FaultUpstream

ENGINE = "scripted"


def front_config(path: Path, upstreams: dict[str, str], **resilience: object) -> Path:
    deployments = "".join(
        f'[[models.coder.deployments]]\nname = "{name}"\nbackend = "openai"\n'
        f'url = "{url}/v1"\nmodel_id = "{ENGINE}"\n'
        for name, url in upstreams.items()
    )
    settings = "".join(f"{k} = {v}\n" for k, v in resilience.items())
    path.write_text(f"{deployments}\n[resilience]\n{settings}")
    return path


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    started = {name: start_engine(tmp_path_factory.mktemp(name)) for name in ("left", "right")}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, engines: dict[str, Server]) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("front")
    config = front_config(
        tmp / "codey.toml",
        {name: server.url for name, server in engines.items()},
        breaker_failures=2,
        breaker_reset_seconds=2,
        backoff_initial=0.05,
    )
    server = start_server(tmp, CODEY_CONFIG=str(config))
    yield server
    server.stop()


def start_engine(tmp: Path, port: int | None = None) -> Server:
    config = fake_config(tmp / "codey.toml", write_script(tmp / "script.json"))
    return start_server(tmp, port=port, CODEY_CONFIG=str(config))


def ask(url: str, text: str, stream: bool = False) -> httpx.Response:
    body = {
        "model": "coder",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 4,
        "temperature": 0,
        "stream": stream,
    }
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300)


def samples(front: Server, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one metric on the front's /metrics page."""
    text = httpx.get(f"{front.url}/metrics").text
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def attempts(front: Server) -> dict[tuple[str, str], float]:
    """Attempts per (deployment, outcome)."""
    return {
        (labels["deployment"], labels["outcome"]): value
        for labels, value in samples(front, "codey_upstream_attempts_total")
    }


def breaker_open(front: Server, deployment: str) -> bool:
    gauges = samples(front, "codey_upstream_breaker_open")
    return next(value for labels, value in gauges if labels["deployment"] == deployment) == 1.0


async def test_the_openai_backend_speaks_to_a_codey_engine(engines: dict[str, Server]) -> None:
    backend = FakeBackend(context_length=CONTEXT_LENGTH)  # counts as the engine's model does
    deployment = Deployment(
        name="left", backend="openai", url=f"{engines['left'].url}/v1", model_id=ENGINE
    )
    remote = OpenAIBackend(deployment, ResilienceSettings())
    try:
        prompt = ChatPrompt([Message("user", "Name one sorting algorithm.")])
        assert await remote.count_tokens(prompt) == await backend.count_tokens(prompt)
        assert remote.context_length == CONTEXT_LENGTH  # learned from the engine's /tokenize
        params = SamplingParams(max_tokens=6, temperature=0, top_logprobs=2)
        generation = await remote.generate(prompt, params)
        choice = generation.choices[0]
        assert choice.text and choice.tokens and 0 < choice.confidence <= 1
        assert "".join(t.text for t in choice.tokens) == choice.text
        assert generation.prompt_tokens == await backend.count_tokens(prompt)
        assert generation.completion_tokens == len(choice.tokens)
        deltas = [d async for d in remote.stream(prompt, params)]
        assert "".join(d.text for d in deltas) == choice.text
        assert deltas[-1].finish_reason and deltas[-1].completion_tokens == len(choice.tokens)
        infill = InfillPrompt("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n")
        filled = await remote.generate(infill, SamplingParams(max_tokens=8, temperature=0))
        assert "a" in filled.choices[0].text and filled.prompt_tokens > 0
        assert filled.choices[0].text == "a + b"  # it reached the engine as fill-in-the-middle
    finally:
        await remote.close()


def test_load_spreads_a_kill_loses_nothing_and_a_restart_brings_it_back(
    front: Server, engines: dict[str, Server], tmp_path: Path
) -> None:
    before = attempts(front)
    for i in range(6):
        assert ask(front.url, f"Say the number {i}.").status_code == 200
    after = attempts(front)
    for name in engines:
        assert after.get((name, "ok"), 0) - before.get((name, "ok"), 0) == 3

    # Kill one engine while 24 requests are under way from 3 clients.
    right = engines["right"]
    port = int(right.url.rsplit(":", 1)[1])
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(ask, front.url, f"Count to {i}.") for i in range(24)]
        time.sleep(0.7)
        right.stop(signal.SIGKILL)
        statuses = [f.result().status_code for f in futures]
    assert statuses == [200] * 24
    assert breaker_open(front, "right")
    failed = attempts(front)
    assert failed.get(("right", "unreachable"), 0) >= 2

    engines["right"] = start_engine(tmp_path, port=port)
    time.sleep(2.5)  # the breaker's reset time: the next call to it is the trial
    for i in range(4):
        assert ask(front.url, f"Name the colour {i}.").status_code == 200
    back = attempts(front)
    assert back.get(("right", "ok"), 0) > failed.get(("right", "ok"), 0)
    assert not breaker_open(front, "right")


def test_the_ledger_says_which_deployment_answered(front: Server, tmp_path: Path) -> None:
    assert ask(front.url, "What is a tuple?").status_code == 200
    db = sqlite3.connect(Path(front.log).parent / "codey.db")
    row = db.execute(
        "SELECT backend, deployment, attempts, status FROM ledger ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert row[0] == "openai" and row[1] in ("left", "right") and row[2] >= 1 and row[3] == 200


def test_a_stream_cut_by_the_upstream_ends_in_an_error_event(tmp_path: Path) -> None:
    upstream = FaultUpstream()
    try:
        config = front_config(
            tmp_path / "codey.toml",
            {"flaky": f"http://127.0.0.1:{upstream.port}"},
            breaker_failures=5,  # the cut stream and two 500s must not open it
        )
        server = start_server(tmp_path, CODEY_CONFIG=str(config))
        try:
            upstream.script(("drop", 2))
            response = ask(server.url, "Explain recursion in one line.", stream=True)
            events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
            assert response.status_code == 200 and "error" in events[-2] and events[-1] == "[DONE]"
            assert len(upstream.seen) == 1  # streamed tokens had left: no retry
            upstream.script(("status", 500), ("status", 500))
            assert ask(server.url, "Explain recursion in two lines.").status_code == 200
            assert len(upstream.seen) == 4
        finally:
            server.stop()
        db = sqlite3.connect(tmp_path / "codey.db")
        rows = db.execute("SELECT status, deployment, attempts FROM ledger ORDER BY id").fetchall()
        assert rows == [(502, "flaky", 1), (200, "flaky", 3)]
    finally:
        upstream.close()
