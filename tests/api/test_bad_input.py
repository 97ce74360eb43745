"""Every class of bad input, in every dialect: a precise status and message, never a 500.
On the shared fake server: none of it needs a model."""

from __future__ import annotations

import json

import httpx
import pytest

from codey.backends.fake import tokens_of
from tests.fake_script import CONTEXT_LENGTH

NATIVE = "/api/v1/codey"
VERTEX = "/v1/projects/p/locations/l/publishers/google/models"
TOO_LONG = "x = 1\n" * 5000
TOO_LONG_TOKENS = len(tokens_of(TOO_LONG))  # the fake's count, far over its window
WINDOW = str(CONTEXT_LENGTH)

# (path, body, status, words the message must contain)
CASES: list[tuple[str, object, int, list[str]]] = [
    # empty prompt or message
    (f"{NATIVE}/generate", {"prompt": "  "}, 400, ["prompt"]),
    (f"{NATIVE}/chat", {"message": ""}, 400, ["message"]),
    (f"{NATIVE}/complete", {"prefix": "", "suffix": " "}, 400, ["empty"]),
    ("/v1/chat/completions", {"model": "codey", "messages": []}, 400, ["messages"]),
    ("/v1/chat/completions", {"model": "codey", "messages": [{"role": "user", "content": " "}]},
     400, ["user message"]),
    ("/v1/completions", {"model": "codey", "prompt": ""}, 400, ["empty"]),
    (f"{VERTEX}/code-bison:predict", {"instances": [{"prefix": ""}]}, 400, ["empty"]),
    (f"{VERTEX}/codechat-bison:predict", {"instances": [{"messages": []}]}, 400, ["messages"]),
    # unknown model
    ("/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
     404, ["gpt-4o"]),
    ("/v1/completions", {"model": "nope", "prompt": "x"}, 404, ["nope"]),
    (f"{VERTEX}/gemini-pro:predict", {"instances": [{"prefix": "x"}]}, 404, ["gemini-pro"]),
    # parameters out of range
    (f"{NATIVE}/generate", {"prompt": "x", "temperature": 5}, 400, ["temperature"]),
    (f"{NATIVE}/generate", {"prompt": "x", "max_tokens": 0}, 400, ["max_tokens"]),
    (f"{NATIVE}/complete", {"prefix": "x", "max_completions": 6}, 400, ["max_completions"]),
    (f"{NATIVE}/generate", {"prompt": "x", "colour": "red"}, 400, ["colour"]),
    ("/v1/chat/completions", {"model": "codey", "messages": [{"role": "user", "content": "x"}],
                              "top_p": 1.5}, 400, ["top_p"]),
    ("/v1/completions", {"model": "codey", "prompt": "x", "n": 99}, 400, ["n"]),
    # a field of several types: what each would need, under the field's own name
    ("/v1/completions", {"model": "codey", "prompt": [1, 2]}, 400,
     ["prompt: Input should be a valid string or List should have at most 1 item"]),
    (f"{VERTEX}/code-gecko:predict",
     {"instances": [{"prefix": "x"}], "parameters": {"maxOutputTokens": 500}}, 400, ["64"]),
    (f"{VERTEX}/code-bison:predict",
     {"instances": [{"prefix": "x"}], "parameters": {"candidateCount": 9}}, 400,
     ["candidateCount"]),
    # a streamed predict names the fields of its own body (inputs), not of a predict request
    (f"{VERTEX}/code-bison:serverStreamingPredict", {"inputs": [{"structVal": {}}]}, 400,
     ["inputs.0.prefix: Field required"]),
    (f"{VERTEX}/codechat-bison:serverStreamingPredict", {"inputs": [{"structVal": {}}]}, 400,
     ["inputs.0.messages: Field required"]),
    # the prompt does not fit the context window: both lengths are given
    (f"{NATIVE}/generate", {"prompt": TOO_LONG, "max_tokens": 10}, 400, [WINDOW, "tokens"]),
    ("/v1/completions", {"model": "codey", "prompt": TOO_LONG, "max_tokens": 10}, 400,
     [str(TOO_LONG_TOKENS), WINDOW]),
    (f"{VERTEX}/code-gecko:predict", {"instances": [{"prefix": TOO_LONG}]}, 400, [WINDOW]),
]  # fmt: skip


def _message(body: dict[str, object]) -> str:
    error = body["error"]
    assert isinstance(error, dict)
    return str(error["message"])


@pytest.mark.parametrize(("path", "body", "status", "words"), CASES)
def test_bad_input(
    fake_client: httpx.Client, path: str, body: object, status: int, words: list[str]
) -> None:
    response = fake_client.post(path, json=body)
    assert response.status_code == status, response.text
    message = _message(response.json())
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        (f"{NATIVE}/generate", "native"),
        ("/v1/chat/completions", "openai"),
        ("/tokenize", "openai"),  # as vLLM answers there
        (f"{VERTEX}/code-bison:predict", "vertex"),
    ],
)
def test_malformed_json_and_wrong_types(fake_client: httpx.Client, path: str, shape: str) -> None:
    broken = fake_client.post(
        path, content=b'{"prompt": "x",', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert "not valid JSON" in _message(broken.json())
    latin = fake_client.post(
        path, content=b'{"prompt": "caf\xe9"}', headers={"content-type": "application/json"}
    )
    assert latin.status_code == 400
    assert "byte 15 is not UTF-8" in _message(latin.json())
    wrong = fake_client.post(path, json=["not", "an", "object"])
    assert wrong.status_code == 400
    error = wrong.json()["error"]
    if shape == "vertex":
        assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    elif shape == "openai":
        assert error["type"] == "invalid_request_error"
    else:
        assert wrong.json()["success"] is False


@pytest.mark.parametrize(
    "path", [f"{NATIVE}/generate", "/v1/completions", f"{VERTEX}/code-gecko:predict"]
)
def test_a_body_over_the_limit_is_413(fake_client: httpx.Client, path: str) -> None:
    response = fake_client.post(path, json={"prompt": "x" * 2_000_000})
    assert response.status_code == 413
    assert "1,048,576 bytes" in _message(response.json())


def test_a_chunked_body_over_the_limit_is_413(fake_client: httpx.Client) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"prompt": "'
        for _ in range(40):
            yield b"x" * 50_000
        yield b'"}'

    response = fake_client.post(
        f"{NATIVE}/generate", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_unknown_routes_and_methods_use_the_dialect_shape(fake_client: httpx.Client) -> None:
    assert fake_client.get("/v1/nothing").json()["error"]["type"] == "invalid_request_error"
    assert fake_client.get(f"{NATIVE}/generate").status_code == 405
    missing = fake_client.post("/v1/projects/p/locations/l/publishers/google/models/x:explain")
    assert missing.json()["error"]["status"] == "NOT_FOUND"


def test_an_unknown_conversation_is_404(fake_client: httpx.Client) -> None:
    response = fake_client.post(f"{NATIVE}/chat", json={"message": "hi", "conversation_id": "nope"})
    assert response.status_code == 404
    assert "nope" in _message(response.json())


LONE = "\ud800"  # half of a UTF-16 pair: JSON can spell it, UTF-8 cannot hold it


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        (f"{NATIVE}/complete", {"prefix": f"x = {LONE}"}, "prefix"),
        (f"{NATIVE}/chat", {"message": "hi", "context": LONE}, "context"),
        ("/v1/completions", {"model": "codey", "prompt": "x", "suffix": LONE}, "suffix"),
        ("/v1/chat/completions",
         {"model": "codey", "messages": [{"role": "user", "content": LONE}]},
         "messages.0.content"),
        ("/infill", {"input_prefix": "x", "input_extra": [{"filename": "a.py", "text": LONE}]},
         "input_extra.0.text"),
        (f"{VERTEX}/code-gecko:predict", {"instances": [{"prefix": LONE}]}, "instances.0.prefix"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_is_a_400_that_names_its_field(
    fake_client: httpx.Client, path: str, body: object, where: str
) -> None:
    # json.dumps escapes it as \ud800; a client library would refuse to encode it.
    content = json.dumps(body).encode()
    response = fake_client.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    message = _message(response.json())
    assert message.startswith(f"{where}: ") and "surrogate" in message, message


def test_escaped_text_that_is_unicode_passes(fake_client: httpx.Client) -> None:
    """A pair of escapes is one character, and a backslash before u is the caller's text."""
    body = {"prefix": "face = '\U0001f600'  # \\ud800 in JSON\n", "suffix": ""}
    content = json.dumps(body).encode()  # the emoji as \ud83d\ude00
    assert b"\\ud83d\\ude00" in content and b"\\\\ud800" in content
    response = fake_client.post(
        f"{NATIVE}/complete", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (f"{NATIVE}/generate", '{"prompt": "x", "temperature": NaN}'),
        ("/v1/chat/completions",
         '{"model": "codey", "messages": [{"role": "user", "content": "x"}], "top_p": Infinity}'),
        (f"{VERTEX}/code-bison:predict",
         '{"instances": [{"prefix": "x"}], "parameters": {"temperature": NaN}}'),
    ],
)  # fmt: skip
def test_nan_and_infinity_are_not_numbers_here(
    fake_client: httpx.Client, path: str, body: str
) -> None:
    """Python's JSON reader takes them; they are still not a temperature."""
    response = fake_client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "finite number" in _message(response.json())


@pytest.mark.parametrize(
    ("path", "shape"),
    [(f"{NATIVE}/generate", "native"), ("/v1/completions", "openai"),
     (f"{VERTEX}/code-bison:predict", "vertex")],
)  # fmt: skip
def test_json_sent_as_a_form_is_a_415_that_says_so(
    fake_client: httpx.Client, path: str, shape: str
) -> None:
    """What `curl -d '{...}' URL` sends without -H."""
    form = "application/x-www-form-urlencoded"
    body = b'{"prompt": "def add(a, b):", "model": "codey"}'
    response = fake_client.post(path, content=body, headers={"content-type": form})
    assert response.status_code == 415, response.text
    assert "Content-Type: application/json" in _message(response.json())


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"prompt": "x", "max_tokens": ' + b"9" * 5000 + b"}", "more than 4,300 digits"),
        (b'{"prompt": ' + b"[" * 3000 + b"]" * 3000 + b"}", "nest deeper"),
    ],
)
@pytest.mark.parametrize(
    "path", [f"{NATIVE}/generate", "/v1/completions", f"{VERTEX}/code-bison:predict"]
)
def test_json_beyond_what_python_reads_says_what_is_too_big(
    fake_client: httpx.Client, path: str, body: bytes, words: str
) -> None:
    response = fake_client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert words in _message(response.json())
