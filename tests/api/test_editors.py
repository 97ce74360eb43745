"""Editor clients, replayed request for request as their source sends them, against a real
`codey serve` on the scripted fake: what they send must be taken, and what they read must be
there."""

from __future__ import annotations

import http.client
import json
import re
import tomllib
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from codey.api.llamacpp.protocol import InfillRequest
from codey.config import EMBEDDED_MODEL
from tests.api.conftest import Server, start_server
from tests.fake_script import write_script

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "editors"
CONTINUE = yaml.safe_load((RECIPES / "continue.yaml").read_text())["models"][0]
TABBY = tomllib.loads((RECIPES / "tabby.toml").read_text())["model"]["completion"]["http"]
MODEL = CONTINUE["model"]


VSCODE = json.loads((RECIPES / "llama-vscode.json").read_text())
VIM_ENDPOINT = re.search(r"'endpoint_fim':\s*'([^']+)'", (RECIPES / "llama.vim").read_text())


def test_the_llama_cpp_plugins_recipes_point_at_codeys_infill() -> None:
    """llama.vscode posts to `{endpoint}/infill`, llama.vim to `endpoint_fim` as it is."""
    assert VSCODE["llama-vscode.endpoint"] + "/infill" == "http://127.0.0.1:8000/infill"
    assert VIM_ENDPOINT is not None and VIM_ENDPOINT[1] == "http://127.0.0.1:8000/infill"
    assert VSCODE["llama-vscode.n_predict"] <= 512


def test_the_readmes_recipes_name_what_a_default_codey_serves() -> None:
    assert CONTINUE["provider"] == "openai" and "autocomplete" in CONTINUE["roles"]
    assert CONTINUE["apiBase"] == TABBY["api_endpoint"] == "http://127.0.0.1:8000/v1"
    assert TABBY["kind"] == "openai/completion"
    assert MODEL == TABBY["model_name"] == EMBEDDED_MODEL
    # Continue writes Qwen's FIM prompt only for a model named with "qwen" and "coder".
    assert "qwen" in MODEL and "coder" in MODEL


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("editors")
    script = write_script(tmp / "script.json")
    # Continue asks for 4,096 tokens; a window of 32,768 leaves room for its prompts.
    (tmp / "codey.toml").write_text(
        f'[models."{MODEL}"]\n[[models."{MODEL}".deployments]]\nname = "fake"\n'
        f'backend = "fake"\nurl = "{script}"\ncontext_length = 32768\n'
    )
    server = start_server(tmp, CODEY_CONFIG=str(tmp / "codey.toml"))
    yield server
    server.stop()


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    """The `data:` messages of a stream, as Continue's streamSse reads them (up to [DONE])."""
    messages = []
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            break
        message = json.loads(data)
        assert "error" not in message, message  # Continue throws on these
        messages.append(message)
    return messages


def test_continue_autocomplete_with_the_openai_provider(server: Server) -> None:
    """core/llm/llms/OpenAI.ts `_legacystreamComplete` with the qwenMultifileFimTemplate: the
    FIM prompt written by the client, repository snippets first, 12 stop strings."""
    prompt = (
        "<|repo_name|>calc\n<|file_sep|>calc/ops.py\nPI = 3.14159\n"
        "<|file_sep|>calc/main.py\n"
        "<|fim_prefix|>def add(a, b):\n    return <|fim_suffix|>\n<|fim_middle|>"
    )
    body = {
        "model": MODEL,
        "max_tokens": 4096,
        "temperature": 0.01,
        "stream": True,
        "stop": [
            "<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
            "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<|im_start|>", "<|im_end|>",
            "/src/", "#- coding: utf-8", "```",
        ],
        "prompt": prompt,
    }  # fmt: skip
    key = CONTINUE["apiKey"]
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}", "api-key": key}
    with httpx.stream(
        "POST", f"{server.url}/v1/completions", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        messages = sse(response)
    text = "".join(m["choices"][0].get("text") or "" for m in messages)
    # The fake answers "a + b" only to an infill prompt whose prefix ends at "return ".
    assert text == "a + b"


def tabby_body(**extra: Any) -> dict[str, Any]:
    """crates/http-api-bindings/src/completion/openai.rs: prefix and suffix, no stop strings."""
    return {
        "model": MODEL,
        "prompt": "def average(values):\n    total = 0\n    for v in values:\n        total += v\n",
        "suffix": "\n    return result\n",
        "max_tokens": 64,
        "temperature": 0.1,
        "stream": True,
        "presence_penalty": 0.0,
        **extra,
    }


def tabby_read(server: Server, body: dict[str, Any]) -> str:
    """Tabby parses every message and stops at the first non-null finish_reason, which must
    come before [DONE] (a [DONE] it reaches first does not parse)."""
    text = ""
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=30) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            choice = json.loads(line.removeprefix("data:").strip())["choices"][0]
            text += choice["text"]
            if choice["finish_reason"] is not None:
                return text
    raise AssertionError("the stream ended without a finish_reason")


def test_tabby_openai_completion_gets_raw_text_or_post_processed_text_when_asked(
    server: Server,
) -> None:
    # The model writes the suffix's next line again; raw clients get it as written.
    raw = tabby_read(server, tabby_body())
    assert raw == "    result = total / len(values)\n    return result"
    shaped = tabby_read(server, tabby_body(postprocess=True))
    assert shaped == "    result = total / len(values)"


@pytest.mark.parametrize("path", ["/beta/completions", "/v1/beta/completions"])
def test_continue_deepseek_provider_fills_in_the_middle_at_beta_completions(
    server: Server, path: str
) -> None:
    """packages/openai-adapters/src/apis/DeepSeek.ts `fimStream`: prefix and suffix to
    `beta/completions` under the apiBase; it reads choices[0].text."""
    body = {
        "model": MODEL,
        "prompt": "def add(a, b):\n    return ",
        "suffix": "\n",
        "max_tokens": 4096,
        "temperature": 0.01,
        "stop": ["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "//",  # noqa: RUF001
                 "<｜end▁of▁sentence｜>", "/src/", "#- coding: utf-8", "```"],  # noqa: RUF001
        "stream": True,
    }  # fmt: skip
    headers = {"Accept": "application/json", "Authorization": "Bearer none"}
    with httpx.stream(
        "POST", server.url + path, json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        messages = sse(response)
    assert "".join(m["choices"][0].get("text") or "" for m in messages) == "a + b"


# llama.cpp's /infill, as llama.vscode (src/llama-server.ts) and llama.vim (autoload/llama.vim)
# send it: the cursor line so far in `prompt`, other files' chunks in `input_extra`.
CHUNK = {"text": "PI = 3.14159\n", "time": 1764770000.0, "filename": "consts.py"}
TIMINGS = ("prompt_n", "prompt_ms", "prompt_per_second", "predicted_n", "predicted_ms",
           "predicted_per_second")  # fmt: skip


def vscode_body(**extra: Any) -> dict[str, Any]:
    """llama.vscode's `createRequestPayload` with its defaults (3 parallel completions)."""
    return {
        "id_slot": 0,
        "input_prefix": "import math\n\ndef circle(r):\n",
        "input_suffix": "\n",
        "input_extra": [CHUNK],
        "prompt": "    return ",
        "n_predict": VSCODE["llama-vscode.n_predict"],
        "n_cmpl": 3,  # the plugin's default; the recipe asks for 1
        "top_k": 40,
        "top_p": 0.99,
        "stream": False,
        "samplers": ["top_k", "top_p", "infill"],
        "cache_prompt": True,
        "t_max_prompt_ms": 500,
        "t_max_predict_ms": 500,
        **extra,
    }


def test_llama_vscode_warms_the_cache_then_reads_its_completions(server: Server) -> None:
    warm = vscode_body(input_prefix="", input_suffix="", prompt="", n_predict=0, samplers=[],
                       t_max_predict_ms=1)  # fmt: skip
    del warm["stream"], warm["n_cmpl"]
    response = httpx.post(f"{server.url}/infill", json=warm, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["content"] == "" and response.json()["tokens_predicted"] == 0

    response = httpx.post(f"{server.url}/infill", json=vscode_body(), timeout=30)
    assert response.status_code == 200, response.text
    results = response.json()
    assert isinstance(results, list) and len(results) == 3  # as llama.cpp answers n_cmpl > 1
    # The chunk of consts.py reached the model in its repository format, before the cursor.
    assert results[0]["content"] == "PI * r * r"
    for result in results:
        assert result["generation_settings"]["n_ctx"] == 32768
        assert result["stop"] is True and isinstance(result["tokens_cached"], int)
        assert set(TIMINGS) <= set(result["timings"])
        assert result["timings"]["predicted_n"] == result["tokens_predicted"] > 0

    one = httpx.post(f"{server.url}/v1/infill", json=vscode_body(n_cmpl=1), timeout=30).json()
    assert one["content"] == "PI * r * r"  # one completion: an object, which it reads directly
    alone = httpx.post(f"{server.url}/infill", json=vscode_body(n_cmpl=1, input_extra=[]))
    assert alone.json()["content"] == "3.14 * r * r"  # without the chunk, the model guesses


def test_llama_vim_gets_one_compact_object_with_the_fields_it_named(server: Server) -> None:
    fields = ["content", *(f"timings/{t}" for t in TIMINGS), "timings/prompt_per_token_ms",
              "timings/predicted_per_token_ms", "truncated", "tokens_cached"]  # fmt: skip
    body = {
        "id_slot": 0,
        "input_prefix": "import math\n\ndef circle(r):\n",
        "input_suffix": "\n",
        "input_extra": [CHUNK],
        "prompt": "    return ",
        "n_predict": 128,
        "stop": [],
        "n_indent": 4,
        "top_k": 40,
        "top_p": 0.90,
        "samplers": ["top_k", "top_p", "infill"],
        "stream": False,
        "cache_prompt": True,
        "t_max_prompt_ms": 500,
        "t_max_predict_ms": 250,
        "response_fields": fields,
        "model": "",  # sent even when no model is configured, as is an empty key
    }
    status, text = curl_post(f"{server.url}/infill", body)
    assert status == 200, text
    # llama.vim matches the raw text before decoding it.
    assert re.match(r"^\s*{", text) and re.search(r'"content"\s*:"', text)
    answer = json.loads(text)
    assert set(answer) == set(fields)
    assert answer["content"] == "PI * r * r" and answer["truncated"] is False

    warm = {**body, "input_prefix": "", "input_suffix": "", "prompt": "", "n_predict": 0,
            "temperature": 0.0, "samplers": [], "t_max_prompt_ms": 1, "t_max_predict_ms": 1,
            "response_fields": [""]}  # fmt: skip
    assert curl_post(f"{server.url}/infill", warm) == (200, "{}")


def curl_post(url: str, body: dict[str, Any]) -> tuple[int, str]:
    """POST as llama.vim's curl does, with `Authorization: Bearer ` and an empty key (which
    httpx refuses to send)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer "}
    connection.request("POST", parts.path, json.dumps(body), headers)
    response = connection.getresponse()
    return response.status, response.read().decode()


def test_infill_streams_as_llama_cpp_does(server: Server) -> None:
    """A `data:` event per piece, then the whole result with stop: true, and no [DONE]."""
    body = vscode_body(n_cmpl=1, stream=True, postprocess=False)
    with httpx.stream("POST", f"{server.url}/infill", json=body, timeout=30) as response:
        assert response.status_code == 200, response.read()
        lines = [line for line in response.iter_lines() if line]
    events = [json.loads(line.removeprefix("data: ")) for line in lines]
    assert all(line.startswith("data: {") for line in lines)  # no [DONE]
    *pieces, last = events
    assert "".join(e["content"] for e in pieces) == "PI * r * r"
    assert all(e["stop"] is False for e in pieces)
    assert last["stop"] is True and last["content"] == ""
    assert last["tokens_predicted"] == len(pieces) and last["stop_type"] == "eos"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_prefix": " ", "prompt": "", "input_suffix": ""}, "all empty"),
        ({"n_cmpl": 9}, "n_cmpl"),
        ({"n_predict": -2}, "n_predict"),
        ({"stop": ["x"] * 17}, "stop"),
        ({"input_extra": [{"filename": "a.py"}]}, "input_extra.0.text"),
    ],
)
def test_bad_infill_requests_get_400_naming_the_problem(
    server: Server, change: dict[str, Any], message: str
) -> None:
    response = httpx.post(f"{server.url}/infill", json=vscode_body(**change), timeout=30)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]


def test_an_infill_asks_the_engine_for_no_log_probabilities() -> None:
    body = InfillRequest.model_validate({"input_prefix": "def f(", "input_suffix": ")"})
    assert body.to_sampling().logprobs is False
