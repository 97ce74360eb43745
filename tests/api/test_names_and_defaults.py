"""One name per model and one set of sampling defaults per service, whatever the dialect: a
real `codey serve` on two scripted models, with small defaults from its config."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from codey.gateway.pricing import billable_characters
from tests.api.conftest import Server, start_server

CONFIG = """
[chat]
model = "chatty"
max_tokens = 5
temperature = 0.0

[generation]
model = "coder"
max_tokens = 6

[completion]
model = "coder"
max_tokens = 1

[models.coder]
[[models.coder.deployments]]
name = "coder-1"
backend = "fake"
context_length = 8192

[models.chatty]
[[models.chatty.deployments]]
name = "chatty-1"
backend = "fake"
context_length = 8192

[pricing.models.chatty.chat]
input_per_1k_chars = 1.0
output_per_1k_chars = 0.0
"""
VERTEX = "/v1/projects/p/locations/us-central1/publishers/google/models"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("names")
    (tmp / "codey.toml").write_text(CONFIG)
    server = start_server(tmp, CODEY_CONFIG=str(tmp / "codey.toml"))
    yield server
    server.stop()


@pytest.fixture
def sdk(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def ledger(server: Server) -> list[tuple[str, str, str, float, int]]:
    db = sqlite3.connect(Path(server.log).parent / "codey.db")
    try:
        query = "SELECT dialect, service, model, cost_usd, input_chars FROM ledger ORDER BY id"
        return list(db.execute(query))
    finally:
        db.close()


def test_every_dialect_takes_the_services_defaults(
    client: httpx.Client, sdk: openai.OpenAI
) -> None:
    chat = client.post("/api/v1/codey/chat", json={"message": "hello"}).json()
    assert chat["usage_stats"]["completion_tokens"] == 5
    reply = sdk.chat.completions.create(model="codey", messages=[{"role": "user", "content": "hi"}])
    assert reply.usage is not None and reply.usage.completion_tokens == 5
    assert reply.choices[0].finish_reason == "length"
    codechat = client.post(
        f"{VERTEX}/codechat-bison:predict",
        json={"instances": [{"messages": [{"author": "user", "content": "hi"}]}]},
    ).json()
    assert codechat["metadata"]["tokenMetadata"]["outputTokenCount"]["totalTokens"] == 5

    generated = client.post("/api/v1/codey/generate", json={"prompt": "a function"}).json()
    assert generated["usage_stats"]["completion_tokens"] == 6
    bison = client.post(f"{VERTEX}/code-bison:predict", json={"instances": [{"prefix": "f"}]})
    assert bison.json()["metadata"]["tokenMetadata"]["outputTokenCount"]["totalTokens"] == 6

    completed = sdk.completions.create(model="codey", prompt="def f():\n    ", suffix="\n")
    assert completed.usage is not None and completed.usage.completion_tokens == 1
    assert completed.choices[0].text == "return"


def test_the_default_temperature_decides_what_is_cached(sdk: openai.OpenAI) -> None:
    # chat.temperature is 0 here, so a chat that names no temperature is greedy: cacheable
    messages = [{"role": "user", "content": "cache me"}]
    first = sdk.chat.completions.with_raw_response.create(model="chatty", messages=messages)
    again = sdk.chat.completions.with_raw_response.create(model="chatty", messages=messages)
    assert first.headers["x-codey-cache"] == "miss" and again.headers["x-codey-cache"] == "hit"
    sampled = [
        sdk.chat.completions.with_raw_response.create(
            model="chatty", messages=messages, temperature=0.7
        )
        for _ in range(2)
    ]
    assert [r.headers["x-codey-cache"] for r in sampled] == ["miss", "miss"]


def test_the_ledger_and_prices_know_each_model_by_one_name(
    server: Server, client: httpx.Client, sdk: openai.OpenAI
) -> None:
    start = len(ledger(server))
    text = "price me"  # 7 billable characters
    answers = [
        sdk.chat.completions.create(model=name, messages=[{"role": "user", "content": text}])
        for name in ("codey", "chatty", "coder")
    ]
    client.post(f"{VERTEX}/code-gecko@002:predict", json={"instances": [{"prefix": "x = "}]})
    client.post("/api/v1/codey/complete", json={"prefix": "y = "})
    rows = ledger(server)[start:]
    assert [(d, s, m) for d, s, m, _, _ in rows] == [
        ("openai", "chat", "chatty"),  # the alias is the chat service's model
        ("openai", "chat", "chatty"),
        ("openai", "chat", "coder"),
        ("vertex", "completion", "coder"),
        ("native", "completion", "coder"),
    ]
    # chatty's own price (input only) under its alias and its name; coder at the service's
    assert [r[4] for r in rows[:3]] == [7, 7, 7]
    assert rows[0][3] == pytest.approx(7 / 1000) and rows[1][3] == pytest.approx(7 / 1000)
    output = billable_characters(answers[2].choices[0].message.content or "")
    assert rows[2][3] == pytest.approx((7 * 0.00025 + output * 0.0005) / 1000)
