"""The default deployment: the 1.5B for generation and completion, the 0.5B for chat, each in
an engine process of its own, behind one server."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import start_server

pytestmark = pytest.mark.model

SMALL, LARGE = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"


def test_each_service_runs_on_its_model_in_an_engine_of_its_own(tmp_path: Path) -> None:
    server = start_server(tmp_path, CODEY_MODEL__AVAILABLE=None)
    try:
        client = httpx.Client(base_url=server.url, timeout=300)
        ready = client.get("/readyz").json()
        assert set(ready["engines"]) == {SMALL, LARGE}
        assert len({engine["pid"] for engine in ready["engines"].values()}) == 2
        assert [m["id"] for m in client.get("/v1/models").json()["data"]][:2] == [LARGE, SMALL]

        def chat(model: str) -> dict[str, object]:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": "Name one sorting algorithm."}],
                "max_tokens": 12,
                "temperature": 0,
            }
            response = client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            answer: dict[str, object] = response.json()
            return answer

        def decoded() -> dict[str, float]:
            """Answer tokens each engine has decoded, once both have reported being idle."""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                families = text_string_to_metric_families(client.get("/metrics").text)
                counts = {
                    s.labels["model"]: s.value
                    for f in families
                    if f.name == "codey_engine_decoded_tokens"
                    for s in f.samples
                }
                active = client.get("/readyz").json()["engines"]
                if all(e["batching"].get("active", 0) == 0 for e in active.values()):
                    return counts
                time.sleep(0.1)
            pytest.fail("the engines did not settle")

        # the alias runs chat's model (the 0.5B), in the 0.5B's engine only
        chat("codey")
        first = decoded()
        assert first[SMALL] > 0 and first[LARGE] == 0
        # a model's own name runs that model, and completion's alias runs the 1.5B
        assert chat(LARGE)["model"] == LARGE
        completion = client.post(
            "/v1/completions",
            json={"model": "codey", "prompt": "def add(a, b):\n", "max_tokens": 8},
        )
        assert completion.status_code == 200, completion.text
        second = decoded()
        assert second[SMALL] == first[SMALL] and second[LARGE] >= 2
    finally:
        server.stop()
