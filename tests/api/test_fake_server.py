"""A real `codey serve` on the scripted backend (the shared `fake_server`): the three dialects,
the gateway and the services, end to end in seconds and without the model. The prompts here
match no rule of tests/fake_script.py, so the fake gives its default answers."""

from __future__ import annotations

import ast
import math
import sqlite3
from pathlib import Path

import httpx
import openai
import pytest

from codey.backends.fake import logprob_of, tokens_of
from tests.api.conftest import Server

CODE = "def answer():\n    return 42"


def test_generate_extracts_the_scripted_code_with_its_confidence(fake_client: httpx.Client) -> None:
    body = fake_client.post("/api/v1/codey/generate", json={"prompt": "a function"}).json()
    assert body["success"] is True and body["generated_code"] == CODE, body
    ast.parse(body["generated_code"])
    # the confidence of the code's own tokens, as the fake scored them
    answer = "Here it is:\n\n```python\n" + CODE  # generation stops at CLOSING_FENCE
    pieces, offset, inside = tokens_of(answer), 0, []
    start = answer.index(CODE)
    for i, piece in enumerate(pieces):
        if offset + len(piece) > start and offset < start + len(CODE):
            inside.append(logprob_of(piece, i))
        offset += len(piece)
    assert body["confidence"] == pytest.approx(math.exp(sum(inside) / len(inside)), abs=1e-4)
    assert body["usage_stats"]["completion_tokens"] == len(pieces)


def test_the_openai_sdk_streams_chat_with_usage(fake_server: Server) -> None:
    sdk = openai.OpenAI(base_url=f"{fake_server.url}/v1", api_key="unused")
    chunks = list(
        sdk.chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert CODE in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_completion_and_vertex_gecko_fill_the_hole(fake_client: httpx.Client) -> None:
    body = fake_client.post(
        "/api/v1/codey/complete", json={"prefix": "def f():\n    ", "suffix": "\n"}
    ).json()
    assert body["suggestions"][0]["completion"] == "return 42"
    assert body["suggestions"][0]["type"] == "return"
    gecko = fake_client.post(
        "/v1/projects/p/locations/us-central1/publishers/google/models/code-gecko@002:predict",
        json={"instances": [{"prefix": "def f():\n    ", "suffix": "\n"}]},
    ).json()
    assert gecko["predictions"][0]["content"] == "return 42"
    assert "deployedModelId" not in gecko


def test_the_ledger_and_the_models_list_name_the_deployment(
    fake_server: Server, fake_client: httpx.Client
) -> None:
    assert fake_client.get("/v1/models").json()["data"][0]["id"] == "scripted"
    ready = fake_client.get("/readyz").json()
    assert ready["status"] == "ready" and "engine" not in ready
    stats = fake_client.get("/api/v1/codey/stats").json()
    assert stats["engines"] == []
    assert stats["deployments"][0]["backend"] == "fake"
    assert stats["deployments"][0]["state"] == "ready"
    rows = sqlite_rows(Path(fake_server.log).parent / "codey.db")
    assert rows and {backend for backend, _ in rows} <= {"fake", "cache"}


def sqlite_rows(path: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(path)
    try:
        # the shared server also logs refused requests, which no backend saw
        return list(db.execute("SELECT backend, deployment FROM ledger WHERE status = 200"))
    finally:
        db.close()
