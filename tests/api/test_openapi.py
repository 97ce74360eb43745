"""/openapi.json tells the truth: schemathesis runs every operation against a real `codey serve`
on the scripted backend, with all its checks, in positive and negative modes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from codey.api.errors import dialect_of
from codey.api.openapi import ERROR_SCHEMAS
from tests.api.conftest import Server, start_server

CONFIG = """
[models.scripted]
[[models.scripted.deployments]]
name = "fake"
backend = "fake"
context_length = 8192
"""
UNLIMITED = {
    f"CODEY_LIMITS__{service}__REQUESTS_PER_DAY": "100000000"
    for service in ("GENERATION", "CHAT", "COMPLETION")
}
# codey also refuses, with 400 and the reason, what JSON Schema cannot say: a prompt and
# max_tokens that do not fit the context window together, a conversation whose user turns are
# all blank, an instance that is not the shape of the model family named in the path. Every
# other check runs, the rejection of schema-violating input among them.
CANNOT_BE_SAID = "positive_data_acceptance"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("openapi")
    (tmp / "codey.toml").write_text(CONFIG)
    server = start_server(tmp, CODEY_CONFIG=str(tmp / "codey.toml"), **UNLIMITED)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def document(server: Server) -> dict[str, Any]:
    return httpx.get(f"{server.url}/openapi.json").json()


def schemathesis(schema: str, url: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        schema,
        "--url",
        url,
        "--checks",
        "all",
        "--exclude-checks",
        CANNOT_BE_SAID,
        "--mode",
        "all",
        "--max-examples",
        "20",
        "--generation-deterministic",
        "--no-shrink",
        "--report-dir",
        str(tmp),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp)


def test_no_operation_documents_422_and_every_error_has_its_dialects_shape(
    document: dict[str, Any],
) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        expected = f"#/components/schemas/{ERROR_SCHEMAS[dialect_of(path)].__name__}"
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            assert "500" in responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413"} <= responses.keys(), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")) and "content" in response:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": expected}, (method, path, status)


def test_the_routes_that_run_a_model_document_quotas_and_an_engine_that_is_down(
    document: dict[str, Any],
) -> None:
    generate = document["paths"]["/api/v1/codey/generate"]["post"]["responses"]
    assert {"401", "403", "429", "502", "503", "504"} <= generate.keys()
    assert (
        "Retry-After" in generate["429"]["headers"] and "Retry-After" in generate["503"]["headers"]
    )
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert "404" in chat and "text/event-stream" in chat["200"]["content"]
    assert "429" not in document["paths"]["/v1/models"]["get"]["responses"]


def test_schemathesis_finds_nothing_in_the_served_document(server: Server, tmp_path: Path) -> None:
    result = schemathesis(f"{server.url}/openapi.json", server.url, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_schemathesis_finds_nothing_with_the_names_this_server_serves(
    server: Server, document: dict[str, Any], tmp_path: Path
) -> None:
    """The same run with model names narrowed to the served ones, so that the generated
    requests reach the services instead of stopping at 404."""
    schemas = document["components"]["schemas"]
    for name in ("ChatCompletionRequest", "CompletionRequest", "TokenizeRequest"):
        schemas[name]["properties"]["model"] = {"type": "string", "enum": ["scripted", "codey"]}
    families = ["code-bison", "codechat-bison@002", "code-gecko"]
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "model":
                    parameter["schema"] = {"type": "string", "enum": families}
    narrowed = tmp_path / "narrowed.json"
    narrowed.write_text(json.dumps(document))
    result = schemathesis(str(narrowed), server.url, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
