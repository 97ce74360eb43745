"""The OpenAI-compatible backend's requests and its reading of answers and errors, over real
HTTP to the fault-injecting upstream (tests/api/test_upstreams.py runs it against a real
engine)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from codey.backends.base import ChatPrompt, InfillPrompt, Message, SamplingParams, TextPrompt
from codey.backends.openai import OpenAIBackend
from codey.config import Deployment, ResilienceSettings
from codey.errors import ConfigError, InvalidRequest, UpstreamError
from tests.fault_upstream import FaultUpstream

PARAMS = SamplingParams(max_tokens=8, temperature=0, stop=("\n\n",))


@pytest.fixture
def upstream() -> Iterator[FaultUpstream]:
    server = FaultUpstream()
    yield server
    server.close()


def backend_for(upstream: FaultUpstream, **fields: object) -> OpenAIBackend:
    deployment = Deployment(
        name="u",
        backend="openai",
        url=upstream.url,
        model_id="m",
        **fields,  # type: ignore[arg-type]
    )
    return OpenAIBackend(deployment, ResilienceSettings())


@pytest.fixture
async def remote(upstream: FaultUpstream) -> AsyncIterator[OpenAIBackend]:
    backend = backend_for(upstream, api_key="k-123")
    yield backend
    await backend.close()


async def test_chat_goes_to_chat_completions_with_the_key(
    remote: OpenAIBackend, upstream: FaultUpstream
) -> None:
    generation = await remote.generate(ChatPrompt([Message("user", "hello there")]), PARAMS)
    assert generation.choices[0].text == "Sure: hello there done."
    assert (generation.prompt_tokens, generation.completion_tokens) == (2, 4)
    seen = upstream.seen[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.body["messages"] == [{"role": "user", "content": "hello there"}]
    assert seen.body["stop"] == ["\n\n"] and seen.body["logprobs"] is True


async def test_text_and_infill_by_suffix_go_to_completions(
    remote: OpenAIBackend, upstream: FaultUpstream
) -> None:
    await remote.generate(TextPrompt("def f("), PARAMS)
    await remote.generate(InfillPrompt("def f(", "):\n    pass"), PARAMS)
    assert [s.path for s in upstream.seen] == ["/v1/completions"] * 2
    assert upstream.seen[0].body["prompt"] == "def f("
    assert upstream.seen[1].body["suffix"] == "):\n    pass"


async def test_infill_by_template_and_by_chat(upstream: FaultUpstream) -> None:
    qwen = backend_for(upstream, infill="qwen")
    chat = backend_for(upstream, infill="chat")
    try:
        await qwen.generate(InfillPrompt("a = ", "\nprint(a)"), PARAMS)
        await chat.generate(InfillPrompt("a = ", "\nprint(a)"), PARAMS)
    finally:
        await qwen.close()
        await chat.close()
    fim, asked = upstream.seen
    assert fim.body["prompt"] == "<|fim_prefix|>a = <|fim_suffix|>\nprint(a)<|fim_middle|>"
    assert "<|endoftext|>" in fim.body["stop"] and "suffix" not in fim.body
    assert asked.path == "/v1/chat/completions" and "cursor" in str(asked.body["messages"])


async def test_a_stream_ends_with_the_usage(remote: OpenAIBackend) -> None:
    deltas = [d async for d in remote.stream(ChatPrompt([Message("user", "a b c")]), PARAMS)]
    assert "".join(d.text for d in deltas) == "Sure: a b c done."
    assert deltas[-1].finish_reason == "stop" and deltas[-1].completion_tokens == 5


async def test_without_tokenize_counts_are_an_upper_bound(remote: OpenAIBackend) -> None:
    prompt = ChatPrompt([Message("user", "héllo")])
    assert await remote.count_tokens(prompt) >= len("héllo".encode())
    assert remote.context_length == 32768


@pytest.mark.parametrize(
    ("fault", "error", "retryable"),
    [
        (("status", 400), InvalidRequest, None),
        (("status", 401), UpstreamError, False),
        (("status", 503), UpstreamError, True),
        (("retry_after", 7), UpstreamError, True),
    ],
)
async def test_errors_in_codeys_terms(
    remote: OpenAIBackend, upstream: FaultUpstream, fault, error, retryable
) -> None:
    upstream.script(fault)
    with pytest.raises(error) as caught:
        await remote.generate(TextPrompt("x"), PARAMS)
    if retryable is not None:
        assert caught.value.retryable is retryable
    if fault[0] == "retry_after":
        assert caught.value.retry_after == 7 and caught.value.upstream_status == 429


async def test_an_unreachable_upstream_is_retryable(upstream: FaultUpstream) -> None:
    backend = backend_for(upstream)
    upstream.close()
    with pytest.raises(UpstreamError) as caught:
        await backend.generate(TextPrompt("x"), PARAMS)
    assert caught.value.retryable and caught.value.upstream_status is None
    await backend.close()


def test_an_unknown_infill_is_a_config_error(upstream: FaultUpstream) -> None:
    with pytest.raises(ConfigError, match="infill"):
        backend_for(upstream, infill="mystery")
