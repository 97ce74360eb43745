"""Editor clients, replayed request for request as their source sends them, against a real
`codey serve` on the scripted fake: what they send must be taken, and what they read must be
there."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from codey.config import EMBEDDED_MODEL
from tests.api.conftest import Server, start_server
from tests.fake_script import write_script

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "editors"
CONTINUE = yaml.safe_load((RECIPES / "continue.yaml").read_text())["models"][0]
TABBY = tomllib.loads((RECIPES / "tabby.toml").read_text())["model"]["completion"]["http"]
MODEL = CONTINUE["model"]


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
