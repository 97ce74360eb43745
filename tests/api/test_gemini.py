"""codey serving all three services from Gemini on Vertex AI: a `codey serve` process whose
only model is a vertex deployment, pointed at the local wire-format server with a
service-account key; quotas, ledger and dialects in front as for any engine."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Server, start_server
from tests.backends.fake_vertex import FakeVertex, Reply
from tests.backends.test_vertex_backend import LOCATION, MODEL, PROJECT, _key_file, _pem


@pytest.fixture(scope="module")
def vertex() -> Iterator[FakeVertex]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    private, public = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with FakeVertex(public_key=public) as fake:
        fake.private_pem = private  # type: ignore[attr-defined]
        yield fake


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, vertex: FakeVertex) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("gemini")
    key = _key_file(tmp / "sa.json", vertex.private_pem, f"{vertex.url}/token")  # type: ignore[attr-defined]
    config = tmp / "codey.toml"
    config.write_text(
        f'[models.gemini]\n[[models.gemini.deployments]]\nname = "vertex-us"\n'
        f'backend = "vertex"\nurl = "{vertex.url}"\nproject = "{PROJECT}"\n'
        f'location = "{LOCATION}"\nmodel_id = "{MODEL}"\ncredentials_file = "{key}"\n'
    )
    server = start_server(tmp, CODEY_CONFIG=str(config))
    yield server
    server.stop()


def test_the_three_services_answer_from_gemini(front: Server, vertex: FakeVertex) -> None:
    vertex.reset()
    vertex.script(
        Reply("Here it is:\n```python\ndef is_even(n):\n    return n % 2 == 0\n```\n"),
        Reply("A tuple cannot change; a list can."),
        Reply("a + b"),
    )
    with httpx.Client(base_url=front.url, timeout=60) as client:
        generated = client.post(
            "/api/v1/codey/generate", json={"prompt": "is a number even", "max_tokens": 64}
        )
        assert generated.status_code == 200, generated.text
        assert generated.json()["generated_code"] == "def is_even(n):\n    return n % 2 == 0"
        assert 0 < generated.json()["confidence"] <= 1
        chat = client.post(
            "/v1/chat/completions",
            json={"model": "gemini", "messages": [{"role": "user", "content": "tuple vs list?"}]},
        )
        assert chat.json()["choices"][0]["message"]["content"].startswith("A tuple")
        assert chat.json()["usage"]["prompt_tokens"] > 0
        completed = client.post(
            "/api/v1/codey/complete",
            json={"prefix": "def add(a, b):\n    return ", "max_completions": 1},
        )
        assert completed.status_code == 200, completed.text
        assert completed.json()["suggestions"][0]["completion"] == "a + b"
    requests = vertex.model_requests()
    assert len(requests) == 3 and all(":generateContent" in r.path for r in requests)
    assert "cursor" in str(requests[2].body["contents"]).lower()  # the chat fallback prompt
    db = sqlite3.connect(Path(front.log).parent / "codey.db")
    rows = db.execute("SELECT service, backend, deployment, status FROM ledger").fetchall()
    assert rows == [
        ("generation", "vertex", "vertex-us", 200),
        ("chat", "vertex", "vertex-us", 200),
        ("completion", "vertex", "vertex-us", 200),
    ]
