"""The scripted backend: its tokens, log-probabilities, limits and streaming behave like an
engine's, so the layers above can be tested on it."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import pytest

from codey.backends.base import ChatPrompt, InfillPrompt, Message, SamplingParams, TextPrompt
from codey.backends.fake import FakeBackend, Rule, logprob_of, tokens_of
from codey.config import Deployment
from codey.errors import ContextOverflow, InvalidRequest

CHAT = ChatPrompt([Message("user", "Write a function.")])
GREEDY = SamplingParams(max_tokens=64, temperature=0)


def test_tokens_spell_the_text_and_carry_fixed_log_probabilities() -> None:
    text = "def f(x):\n    return x  # done"
    pieces = tokens_of(text)
    assert "".join(pieces) == text and len(pieces) > 5
    assert all(-2 < logprob_of(p, i) <= 0 for i, p in enumerate(pieces))
    assert len({logprob_of(p, i) for i, p in enumerate(pieces)}) > 1


async def test_answers_by_prompt_shape_with_real_counts() -> None:
    fake = FakeBackend()
    chat = await fake.generate(CHAT, GREEDY)
    assert "def answer():" in chat.choices[0].text
    assert chat.prompt_tokens == await fake.count_tokens(CHAT)
    assert chat.completion_tokens == len(chat.choices[0].tokens)
    infill = await fake.generate(InfillPrompt("def f():\n    ", "\n"), GREEDY)
    assert infill.choices[0].text == "return 42"
    choice = chat.choices[0]
    expected = math.exp(sum(t.logprob for t in choice.tokens) / len(choice.tokens))
    assert choice.confidence == pytest.approx(expected)


async def test_max_tokens_stop_strings_and_n() -> None:
    fake = FakeBackend()
    short = (await fake.generate(CHAT, SamplingParams(max_tokens=3, temperature=0))).choices[0]
    assert len(short.tokens) == 3 and short.finish_reason == "length"
    stopped = (await fake.generate(CHAT, SamplingParams(stop=("```",)))).choices[0]
    assert stopped.text == "Here it is:\n\n" and stopped.finish_reason == "stop"
    assert "".join(t.text for t in stopped.tokens) == stopped.text
    three = await fake.generate(CHAT, SamplingParams(n=3, temperature=0))
    assert len({c.text for c in three.choices}) == 3


async def test_streaming_gives_the_same_answer_and_usage() -> None:
    fake = FakeBackend()
    whole = await fake.generate(CHAT, GREEDY)
    deltas = [d async for d in fake.stream(CHAT, GREEDY)]
    assert "".join(d.text for d in deltas) == whole.choices[0].text
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].completion_tokens == whole.completion_tokens
    assert deltas[-1].prompt_tokens == whole.prompt_tokens


async def test_limits_are_enforced_like_an_engine() -> None:
    fake = FakeBackend(context_length=300)
    with pytest.raises(ContextOverflow):
        await fake.generate(TextPrompt("word " * 290), SamplingParams(max_tokens=20))
    with pytest.raises(InvalidRequest):
        await fake.generate(TextPrompt("   "), GREEDY)


async def test_a_script_file_decides_the_answers(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": [{"contains": "prime", "answer": "is_prime = ..."}]}))
    fake = FakeBackend.from_deployment(
        Deployment(backend="fake", url=str(script), model_id="scripted", context_length=512)
    )
    prime = await fake.generate(TextPrompt("# prime numbers"), GREEDY)
    assert prime.choices[0].text == "is_prime = ..."
    assert fake.model_id == "scripted" and fake.context_length == 512
    assert fake.prompts == [TextPrompt("# prime numbers")]


async def test_a_rule_can_fix_its_log_probability_and_pace_its_tokens() -> None:
    sure = Rule("certain", "import os", logprob=-0.01)
    slow = Rule("slow", "one two three", delay=0.05)
    fake = FakeBackend(rules=[sure, slow])
    certain = (await fake.generate(TextPrompt("certain"), GREEDY)).choices[0]
    assert {t.logprob for t in certain.tokens} == {-0.01}
    assert certain.confidence == pytest.approx(math.exp(-0.01))
    started = time.perf_counter()
    deltas = [d async for d in fake.stream(TextPrompt("slow"), GREEDY)]
    assert "".join(d.text for d in deltas) == "one two three"
    assert time.perf_counter() - started >= 3 * 0.05
    started = time.perf_counter()
    await fake.generate(TextPrompt("slow"), GREEDY)
    assert time.perf_counter() - started >= 3 * 0.05
    # a caller that gives up stops a slow answer at once
    task = asyncio.create_task(fake.generate(TextPrompt("slow"), GREEDY))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
