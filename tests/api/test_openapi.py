"""/openapi.json tells the truth: schemathesis runs every operation against a real `codey serve`
on the scripted backend, with all its checks, in positive and negative modes (its runs are
marked slow: a minute of fuzzing, in the whole suite only)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from codey.api import openapi
from codey.api.app import create_app
from codey.api.errors import dialect_of
from codey.config import Settings
from codey.gateway.auth import hash_key
from tests.api.conftest import Server, start_server

# Whether a prompt and max_tokens fit the window together depends on the prompt's tokens, which
# no schema can state; a window no generated request can fill takes that rule out of reach.
CONFIG = f"""
[models.scripted]
[[models.scripted.deployments]]
name = "fake"
backend = "fake"
context_length = {2**62}
"""
CHAT_ONLY_KEY = "chat-only-key"
KEYED = f"""{CONFIG}
[[auth.keys]]
name = "chat-only"
sha256 = "{hash_key(CHAT_ONLY_KEY)}"
services = ["chat"]
"""
UNLIMITED = {
    f"CODEY_LIMITS__{service}__REQUESTS_PER_DAY": "100000000"
    for service in ("GENERATION", "CHAT", "COMPLETION")
}

PREDICT = "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}"
# Schema-valid bodies codey refuses with 400, and why: positive_data_acceptance is turned off
# for these operations only. Every other check runs on every operation.
REFUSED_THOUGH_VALID: list[tuple[str, str]] = [
    # Cannot be stated: an instance's shape and maxOutputTokens' limit follow the model family
    # named in the path, and a schema cannot make a body depend on a path parameter.
    (PREDICT + ":predict", "instance shape per model family"),
    (PREDICT + ":serverStreamingPredict", "instance shape per model family"),
]


def _config(tmp: Path) -> Path:
    # Every check, set here rather than with --checks, which would outrank the operations'.
    entries = ["checks.enabled = true\n"] + [
        f'[[operations]]\n# {reason}\ninclude-path = "{path}"\n'
        "checks.positive_data_acceptance.enabled = false\n"
        for path, reason in REFUSED_THOUGH_VALID
    ]
    config = tmp / "schemathesis.toml"
    config.write_text("\n".join(entries))
    return config


def schemathesis(
    schema: str, url: str, tmp: Path, *options: str, examples: int = 20
) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(_config(tmp)),
        "run",
        schema,
        "--url",
        url,
        "--mode",
        "all",
        "--max-examples",
        str(examples),
        "--generation-deterministic",
        "--no-shrink",
        *options,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp)


def passed(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == 0


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout[-6000:] + result.stderr[-2000:]


def serve(tmp: Path, config: str) -> Server:
    (tmp / "codey.toml").write_text(config)
    return start_server(tmp, None, CODEY_CONFIG=str(tmp / "codey.toml"), **UNLIMITED)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = serve(tmp_path_factory.mktemp("openapi"), CONFIG)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = serve(tmp_path_factory.mktemp("openapi-keyed"), KEYED)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def document(server: Server) -> dict[str, Any]:
    return httpx.get(f"{server.url}/openapi.json").json()


def test_no_operation_documents_422_and_every_error_has_its_dialects_shape(
    document: dict[str, Any],
) -> None:
    assert '"422"' not in json.dumps(document)
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        expected = f"#/components/schemas/{openapi.ERROR_SCHEMAS[dialect_of(path)].__name__}"
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "500" in responses, (method, path)
            if method == "post":
                assert "413" in responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413"} <= responses.keys(), (method, path)
                assert responses["400"]["content"]["application/json"]["schema"] == {
                    "$ref": expected
                }, path
            for status, response in responses.items():
                if status.startswith(("4", "5")) and path != "/readyz":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": expected}, (method, path, status)


def test_the_routes_that_run_a_model_document_quotas_and_an_engine_that_is_down(
    document: dict[str, Any],
) -> None:
    generate = document["paths"]["/api/v1/codey/generate"]["post"]["responses"]
    assert {"401", "403", "429", "502", "503", "504"} <= generate.keys()
    assert "Retry-After" in generate["429"]["headers"]
    assert "Retry-After" in generate["503"]["headers"]
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert "404" in chat and "text/event-stream" in chat["200"]["content"]
    streamed = document["paths"][PREDICT + ":serverStreamingPredict"]["post"]["responses"]
    assert streamed["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert "429" not in document["paths"]["/v1/models"]["get"]["responses"]
    assert "403" not in document["paths"]["/tokenize"]["post"]["responses"]


def test_every_route_named_in_the_tables_exists() -> None:
    names = {route.name for _, route in openapi._routes(create_app(Settings()))}
    assert set(openapi.EXTRA) <= names and set(openapi.STREAMED) <= names


@pytest.mark.slow
def test_schemathesis_finds_nothing_in_the_served_document(server: Server, tmp_path: Path) -> None:
    """Any model name, as served. The coverage phase's boundary values run in the next test:
    here they would only repeat its requests, or stop at an unknown model's 404."""
    phases = ("--phases", "examples,fuzzing,stateful")
    result = schemathesis(f"{server.url}/openapi.json", server.url, tmp_path, *phases)
    assert passed(result), explain(result)


@pytest.mark.slow
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
    assert passed(result), explain(result)


@pytest.mark.slow
@pytest.mark.parametrize("key", [None, CHAT_ONLY_KEY], ids=["no key", "a chat-only key"])
def test_schemathesis_finds_nothing_on_a_server_with_keys(
    keyed_server: Server, key: str | None, tmp_path: Path
) -> None:
    """Without a key every keyed route answers 401; with a key for chat alone, generation and
    completion answer 403: both as documented, in each dialect's shape. Fuzzing and stateful
    runs reach every operation; the coverage phase's boundary values, some 1,600 requests, add
    nothing here that the keyless server's runs do not already check."""
    header = () if key is None else ("--header", f"x-api-key: {key}")
    url = keyed_server.url
    phases = ("--phases", "fuzzing,stateful")
    result = schemathesis(f"{url}/openapi.json", url, tmp_path, *header, *phases, examples=5)
    assert passed(result), explain(result)


@pytest.mark.parametrize(
    "tensor",
    [
        {"structVal": [1]},
        {"listVal": 5},
        {"structVal": {"prefix": 5}},
        {"structVal": {"prefix": {"stringVal": ["def"]}, "n": {"intVal": ["x"]}}},
    ],
    ids=["struct of a list", "list of a number", "struct of a number", "int of a word"],
)
def test_a_malformed_tensor_is_refused_with_400(server: Server, tensor: dict[str, Any]) -> None:
    url = server.url + PREDICT.format(project="p", location="l", model="code-bison")
    answer = httpx.post(f"{url}:serverStreamingPredict", json={"inputs": [tensor]})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "inputs.0" in answer.json()["error"]["message"]


def test_tensors_carry_integers_as_numbers_or_as_proto3_writes_them(server: Server) -> None:
    url = server.url + PREDICT.format(project="p", location="l", model="code-bison")
    counts = [{"intVal": [64]}, {"int64Val": ["64"]}, {"floatVal": [64.0]}]
    for count in counts:
        parameters = {"structVal": {"maxOutputTokens": count}}
        body = {"inputs": [{"structVal": {"prefix": {"stringVal": ["def f():"]}}}]}
        answer = httpx.post(f"{url}:serverStreamingPredict", json=body | {"parameters": parameters})
        assert answer.status_code == 200, (count, answer.text)


@pytest.mark.parametrize(
    "parameters",
    [{"candidateCount": "2"}, {"topK": True}, {"temperature": "0.5"}, {"candidateCount": 1.5}],
    ids=["count as a string", "topK as a boolean", "temperature as a string", "count of 1.5"],
)
def test_vertex_parameters_of_the_wrong_type_are_refused(
    server: Server, parameters: dict[str, Any]
) -> None:
    url = server.url + PREDICT.format(project="p", location="l", model="code-bison")
    body = {"instances": [{"prefix": "def add(a, b):"}], "parameters": parameters}
    answer = httpx.post(f"{url}:predict", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_vertex_parameters_take_integers_written_as_floats(server: Server) -> None:
    url = server.url + PREDICT.format(project="p", location="l", model="code-bison")
    parameters = {"candidateCount": 2.0, "maxOutputTokens": 64.0, "topK": 40.0, "temperature": 0}
    body = {"instances": [{"prefix": "def add(a, b):"}], "parameters": parameters}
    answer = httpx.post(f"{url}:predict", json=body)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 2
