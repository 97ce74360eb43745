"""The OpenAI dialect through a real server on the scripted fake (tests/fake_script.py), with
the official openai SDK as the client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import jsonschema_rs
import openai
import pytest
from pydantic import BaseModel

from codey.api.openai.protocol import ChatCompletionRequest, CompletionRequest
from tests.api.conftest import Server


@pytest.fixture
def sdk(fake_server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{fake_server.url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def test_models(sdk: openai.OpenAI) -> None:
    ids = [m.id for m in sdk.models.list()]
    assert ids == ["scripted", "narrow", "codey"]  # the configured names, then the alias


def test_chat(sdk: openai.OpenAI) -> None:
    response = sdk.chat.completions.create(
        model="codey",
        messages=[
            {"role": "system", "content": "You answer with one word."},
            {"role": "user", "content": "Which Python keyword defines a function?"},
        ],
        max_tokens=8,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    choice = response.choices[0]
    assert "def" in (choice.message.content or "")
    assert choice.finish_reason in ("stop", "length")
    assert response.usage is not None and response.usage.completion_tokens <= 8
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )
    assert choice.logprobs is not None and choice.logprobs.content
    first = choice.logprobs.content[0]
    assert first.logprob <= 0 and len(first.top_logprobs) == 2


def test_chat_n_and_stop(sdk: openai.OpenAI) -> None:
    response = sdk.chat.completions.create(
        model="codey",
        messages=[{"role": "user", "content": "Count from 1 to 10 separated by commas."}],
        max_tokens=40,
        temperature=0,
        n=2,
        stop=["5"],
    )
    assert len(response.choices) == 2
    assert all("5" not in (c.message.content or "") for c in response.choices)
    # the count reached the model and was cut at the stop string, not just left unsaid
    assert all((c.message.content or "").endswith("4, ") for c in response.choices)
    assert response.choices[0].message.content != response.choices[1].message.content


def test_chat_streaming_with_usage(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="codey",
        messages=[{"role": "user", "content": "Write a Python hello world."}],
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    usage = chunks[-1].usage
    assert usage is not None and 0 < usage.completion_tokens <= 24
    whole = sdk.chat.completions.create(
        model="codey",
        messages=[{"role": "user", "content": "Write a Python hello world."}],
        max_tokens=24,
        temperature=0,
    )
    assert whole.choices[0].message.content == text


def test_completions_with_suffix_fill_the_middle(sdk: openai.OpenAI) -> None:
    response = sdk.completions.create(
        model="codey",
        prompt="def add(a, b):\n    return ",
        suffix="\n\n\nprint(add(2, 3))\n",
        max_tokens=8,
        temperature=0,
        logprobs=1,
    )
    choice = response.choices[0]
    assert "a + b" in choice.text or "a+b" in choice.text
    assert choice.logprobs is not None and choice.logprobs.tokens
    assert response.usage is not None and response.usage.prompt_tokens > 5


def test_the_user_names_the_typist_but_not_the_answer(sdk: openai.OpenAI) -> None:
    asked = dict(model="codey", prompt="def sub(a, b):\n    return ", suffix="\n", max_tokens=8)
    first = sdk.completions.with_raw_response.create(**asked, temperature=0, user="editor-1")
    other = sdk.completions.with_raw_response.create(**asked, temperature=0, user="editor-2")
    assert first.headers["x-codey-cache"] == "miss"
    assert other.headers["x-codey-cache"] == "hit"  # the same code gets the same answer
    assert other.parse().choices[0].text == first.parse().choices[0].text


def test_completions_streaming(sdk: openai.OpenAI) -> None:
    stream = sdk.completions.create(
        model="codey", prompt="# Python\nimport", max_tokens=6, temperature=0, stream=True
    )
    text = "".join(chunk.choices[0].text for chunk in stream if chunk.choices)
    assert text.strip()


def test_errors_are_openai_error_objects(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert "gpt-9" in str(caught.value)
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(
            model="codey", messages=[{"role": "user", "content": "x"}], temperature=3
        )
    assert bad.value.body["param"] == "temperature"  # type: ignore[index]


def test_integers_may_be_written_as_floats(sdk: openai.OpenAI) -> None:
    """JSON Schema's integer takes 2.0, as the request's schema promises."""
    response = sdk.chat.completions.create(
        model="codey",
        messages=[{"role": "user", "content": "Count from 1 to 10 separated by commas."}],
        temperature=0,
        extra_body={"n": 2.0, "max_tokens": 40.0, "seed": 7.0},
    )
    assert len(response.choices) == 2
    with pytest.raises(openai.BadRequestError):
        sdk.completions.create(model="codey", prompt="x", extra_body={"n": 1.5})


BLANK_PART = {"type": "text", "text": "\t"}


def _valid(model: type[BaseModel], body: dict[str, object]) -> bool:
    return jsonschema_rs.Draft202012Validator(model.model_json_schema()).is_valid(body)


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": " \n"}],
        [{"role": "system", "content": "x"}, {"role": "user", "content": [BLANK_PART]}],
        [{"role": "assistant", "content": "x"}, {"role": "user"}],
    ],
    ids=["a blank turn", "blank parts", "no content"],
)
def test_a_chat_where_the_user_says_nothing_is_refused_as_its_schema_says(
    sdk: openai.OpenAI, messages: list[dict[str, object]]
) -> None:
    body = {"model": "codey", "messages": messages}
    assert not _valid(ChatCompletionRequest, body)
    with pytest.raises(openai.BadRequestError, match="user message"):
        sdk.chat.completions.create(model="codey", messages=messages)  # type: ignore[arg-type]


def test_the_chat_schema_takes_a_user_turn_with_text_in_any_part() -> None:
    parts = [{"type": "text", "text": " "}, {"type": "text", "text": "x"}]
    for messages in ([{"role": "user", "content": "x"}], [{"role": "user", "content": parts}]):
        assert _valid(ChatCompletionRequest, {"model": "codey", "messages": messages})


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": " "},
        {"prompt": [""]},
        {"prompt": "", "suffix": "\n"},
        {"prompt": "", "suffix": None},
    ],
    ids=["a blank prompt", "a blank prompt in a list", "a blank suffix", "a null suffix"],
)
def test_a_completion_with_no_text_is_refused_as_its_schema_says(
    sdk: openai.OpenAI, body: dict[str, object]
) -> None:
    assert not _valid(CompletionRequest, {"model": "codey", **body})
    with pytest.raises(openai.BadRequestError, match="empty"):
        sdk.completions.create(model="codey", **body)  # type: ignore[call-overload]


def test_the_completion_schema_takes_text_on_either_side() -> None:
    for body in ({"prompt": "x"}, {"prompt": ["x"], "suffix": ""}, {"prompt": "", "suffix": "x"}):
        assert _valid(CompletionRequest, {"model": "codey", **body})


def test_a_stream_of_several_choices_is_refused_as_its_schema_says(sdk: openai.OpenAI) -> None:
    body = {"model": "codey", "prompt": "x", "stream": True, "n": 2}
    assert not _valid(CompletionRequest, body)
    assert _valid(CompletionRequest, body | {"n": 1})
    assert _valid(CompletionRequest, body | {"stream": False})
    with pytest.raises(openai.BadRequestError, match="one choice"):
        sdk.completions.create(model="codey", prompt="x", stream=True, n=2)


def test_null_means_left_out_as_in_openais_api(fake_client: httpx.Client) -> None:
    body = {"model": "codey", "prompt": "def add(a, b):", "max_tokens": 8}
    nulls = dict.fromkeys(("stream", "n", "logprobs", "echo", "stop", "suffix", "seed"))
    left_out = fake_client.post("/v1/completions", json=body)
    sent_null = fake_client.post("/v1/completions", json=body | nulls)
    assert sent_null.status_code == left_out.status_code == 200, sent_null.text
    assert sent_null.json()["choices"] == left_out.json()["choices"]


def test_log_probabilities_are_asked_of_the_engine_only_when_the_request_wants_them() -> None:
    said = [{"role": "user", "content": "hi"}]
    chat = ChatCompletionRequest.model_validate({"model": "codey", "messages": said})
    assert chat.to_sampling().logprobs is False
    chat = ChatCompletionRequest.model_validate(
        {"model": "codey", "messages": said, "logprobs": True}
    )
    assert chat.to_sampling().logprobs is True
    completion = CompletionRequest.model_validate({"model": "codey", "prompt": "x"})
    assert completion.to_sampling().logprobs is False
    completion = CompletionRequest.model_validate({"model": "codey", "prompt": "x", "logprobs": 0})
    assert completion.to_sampling().logprobs is True
