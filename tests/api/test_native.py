"""The native dialect through a real server on the scripted fake (tests/fake_script.py), with
httpx as the client."""

from __future__ import annotations

import ast

import httpx


def test_generate(fake_client: httpx.Client) -> None:
    response = fake_client.post(
        "/api/v1/codey/generate",
        json={
            "prompt": "a function that reverses a string",
            "max_tokens": 96,
            "temperature": 0,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    tree = ast.parse(body["generated_code"])
    assert any(isinstance(node, ast.FunctionDef) for node in tree.body)
    assert "[::-1]" in body["generated_code"]  # the scripted answer to this prompt
    assert body["language"] == "python"
    assert 0 < body["confidence"] <= 1
    assert body["cached"] is False
    stats = body["usage_stats"]
    assert body["tokens_used"] == stats["prompt_tokens"] + stats["completion_tokens"]
    assert body["execution_time_ms"] > 0


def test_chat_keeps_the_conversation(fake_client: httpx.Client) -> None:
    first = fake_client.post(
        "/api/v1/codey/chat",
        json={"message": "My name is Ada.", "max_tokens": 24, "temperature": 0},
    ).json()
    second = fake_client.post(
        "/api/v1/codey/chat",
        json={
            "message": "What is my name?",
            "conversation_id": first["conversation_id"],
            "max_tokens": 24,
            "temperature": 0,
        },
    )
    assert second.status_code == 200, second.text
    assert "Ada" in second.json()["response"]
    assert second.json()["conversation_id"] == first["conversation_id"]


def test_chat_with_history_from_the_client(fake_client: httpx.Client) -> None:
    response = fake_client.post(
        "/api/v1/codey/chat",
        json={
            "message": "What is my name?",
            "conversation_history": [
                {"role": "user", "content": "My name is Grace.", "timestamp": "2026-11-25T10:00"},
                {"role": "assistant", "content": "Hello Grace!"},
            ],
            "max_tokens": 24,
            "temperature": 0,
        },
    )
    assert response.status_code == 200, response.text
    assert "Grace" in response.json()["response"]


def test_complete_with_other_files_of_the_project(fake_client: httpx.Client) -> None:
    body = {"prefix": "def circle(r):\n    return ", "suffix": "\n", "max_completions": 1}
    files = [{"path": "geometry/consts.py", "text": "PI = 3.14159\n"}]
    answer = fake_client.post(
        "/api/v1/codey/complete", json={**body, "files": files, "path": "geometry/area.py"}
    )
    assert answer.status_code == 200, answer.text
    # The file reached the model in its repository format, named by its path.
    assert answer.json()["suggestions"][0]["completion"] == "PI * r * r"
    alone = fake_client.post("/api/v1/codey/complete", json=body).json()
    assert alone["suggestions"][0]["completion"] == "3.14 * r * r"
    nameless = fake_client.post("/api/v1/codey/complete", json={**body, "files": [{"text": "x"}]})
    assert nameless.status_code == 400 and "files.0.path" in nameless.text


def test_complete(fake_client: httpx.Client) -> None:
    response = fake_client.post(
        "/api/v1/codey/complete",
        json={
            "prefix": "def area(r):\n    ",
            "suffix": "\n",
            "max_completions": 2,
            "max_tokens": 24,
        },
    )
    assert response.status_code == 200, response.text
    suggestions = response.json()["suggestions"]
    assert suggestions
    assert {"completion", "confidence", "type"} <= suggestions[0].keys()
    assert response.json()["tokens_used"] > 0


def test_a_session_names_the_typist_but_not_the_answer(fake_client: httpx.Client) -> None:
    body = {"prefix": "def volume(r):\n    ", "suffix": "\n", "max_completions": 1}
    first = fake_client.post("/api/v1/codey/complete", json={**body, "session": "editor-1"})
    other = fake_client.post("/api/v1/codey/complete", json={**body, "session": "editor-2"})
    assert first.status_code == other.status_code == 200, first.text
    assert first.json()["cached"] is False
    assert other.json()["cached"] is True  # same code, same answer, whoever types it
    assert other.json()["suggestions"] == first.json()["suggestions"]
    too_long = fake_client.post("/api/v1/codey/complete", json={**body, "session": "x" * 201})
    assert too_long.status_code == 400 and "session" in too_long.text


def test_usage_counts_requests_since_start(fake_client: httpx.Client) -> None:
    before = fake_client.get("/api/v1/codey/usage").json()["services"]["completion"]["requests"]
    fake_client.post(
        "/api/v1/codey/complete", json={"prefix": "x = ", "max_completions": 1, "max_tokens": 4}
    )
    after = fake_client.get("/api/v1/codey/usage").json()["services"]["completion"]
    assert after["requests"] == before + 1
    assert after["prompt_tokens"] > 0


def test_integers_may_be_written_as_floats(fake_client: httpx.Client) -> None:
    """JSON Schema's integer takes 2.0; booleans and fractions stay refused."""
    body = {"prefix": "def area(r):\n    ", "suffix": "\n", "max_tokens": 24.0}
    taken = fake_client.post("/api/v1/codey/complete", json=body | {"max_completions": 2.0})
    assert taken.status_code == 200, taken.text
    for wrong in (True, 1.5, "2"):
        refused = fake_client.post("/api/v1/codey/complete", json=body | {"max_completions": wrong})
        assert refused.status_code == 400, (wrong, refused.text)


def test_usage_of_a_day_that_does_not_exist_is_refused(fake_client: httpx.Client) -> None:
    assert fake_client.get("/api/v1/codey/usage?day=2026-01-02").json()["day"] == "2026-01-02"
    for day in ("2026-13-45", "2026-02-30", "86400"):
        answer = fake_client.get("/api/v1/codey/usage", params={"day": day})
        assert answer.status_code == 400, (day, answer.text)
        assert answer.json()["success"] is False and "day" in answer.json()["error"]["message"]


def test_health_and_openapi(fake_client: httpx.Client) -> None:
    assert fake_client.get("/healthz").json() == {"status": "ok"}
    assert fake_client.get("/readyz").json()["status"] == "ready"
    spec = fake_client.get("/openapi.json").json()
    for path in (
        "/api/v1/codey/generate",
        "/api/v1/codey/chat",
        "/api/v1/codey/complete",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
    ):
        assert path in spec["paths"]
    assert any(p.endswith(":predict") for p in spec["paths"])
    assert "GenerateBody" in spec["components"]["schemas"]
    assert fake_client.get("/docs").status_code == 200
