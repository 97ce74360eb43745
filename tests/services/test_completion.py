"""Completion on the scripted fake (tests/fake_script.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from codey.backends.base import InfillPrompt, TextPrompt
from codey.backends.fake import FakeBackend, Rule, tokens_of
from codey.backends.fim import SourceFile
from codey.config import CompletionSettings
from codey.errors import InvalidRequest
from codey.runtime import Runtime
from codey.services.completion import (
    CompletionRequest,
    CompletionService,
    LineDeadline,
    Shaping,
)
from codey.services.sampling import Sampling
from codey.services.suggestions import heal_prefix

PREFIX = (
    "def average(values):\n"
    '    """The arithmetic mean of values."""\n'
    "    total = 0\n"
    "    for v in values:\n"
    "        total += v\n"
    "    "
)
SUFFIX = "\n    return result\n\n\ndef main():\n    print(average([1, 2, 3]))\n"
KINDS = {
    "function",
    "class",
    "import",
    "variable",
    "return",
    "control",
    "call",
    "expression",
    "comment",
    "statement",
}


async def test_cursor_on_an_empty_line_in_a_body_gets_suggestions(fake_runtime: Runtime) -> None:
    result = await fake_runtime.completion.complete(
        CompletionRequest(PREFIX, SUFFIX, max_completions=3, max_tokens=32)
    )
    assert result.suggestions
    texts = [s.completion for s in result.suggestions]
    assert len(set(texts)) == len(texts)
    for suggestion in result.suggestions:
        assert suggestion.completion.strip()
        assert "return result" not in [line.strip() for line in suggestion.completion.split("\n")]
        assert suggestion.kind in KINDS
        assert 0 < suggestion.confidence <= 1
    # the model wrote the suffix's `return result` again; post-processing kept the rest
    assert texts[0] == "result = total / len(values)"
    confidences = [s.confidence for s in result.suggestions]
    assert confidences == sorted(confidences, reverse=True)
    assert result.prompt_tokens > 0 and result.completion_tokens > 0


async def test_a_mid_line_cursor_completes_only_that_line(fake_runtime: Runtime) -> None:
    result = await fake_runtime.completion.complete(
        CompletionRequest("import numpy as ", "\n\nx = np.zeros(3)\n", max_completions=1)
    )
    assert result.suggestions[0].completion == "np"
    assert result.suggestions[0].kind == "import"
    assert result.suggestions[0].confidence > 0.9


async def test_the_same_request_gives_the_same_suggestions(fake_runtime: Runtime) -> None:
    request = CompletionRequest(PREFIX, SUFFIX, max_completions=2, max_tokens=24)
    first = await fake_runtime.completion.complete(request)
    second = await fake_runtime.completion.complete(request)
    assert first.suggestions == second.suggestions


async def test_post_processing_can_be_switched_off_for_measurement(fake_runtime: Runtime) -> None:
    raw = await fake_runtime.completion.complete(
        CompletionRequest(PREFIX, SUFFIX, max_completions=1, max_tokens=32, postprocess=False)
    )
    processed = await fake_runtime.completion.complete(
        CompletionRequest(PREFIX, SUFFIX, max_completions=1, max_tokens=32)
    )
    assert len(raw.suggestions[0].completion) >= len(processed.suggestions[0].completion)
    assert "return result" in raw.suggestions[0].completion
    assert "return result" not in processed.suggestions[0].completion


async def test_bad_requests_are_refused(fake_runtime: Runtime) -> None:
    with pytest.raises(InvalidRequest, match="empty"):
        await fake_runtime.completion.complete(CompletionRequest("", "  "))
    with pytest.raises(InvalidRequest, match="between 1 and 5"):
        await fake_runtime.completion.complete(CompletionRequest("x = ", max_completions=6))


async def test_decoding_ends_where_post_processing_would_cut() -> None:
    answer = "result = total / len(values)\n    return result\n\n\ndef other():\n    pass\n"
    backend = FakeBackend(rules=[Rule("total += v", answer)])
    service = CompletionService(backend)
    request = CompletionRequest(PREFIX, SUFFIX, max_completions=1, max_tokens=64)
    stopped = await service.complete(request)
    whole = await service.complete(replace(request, postprocess=False))
    assert stopped.suggestions[0].completion == "result = total / len(values)"
    assert whole.suggestions[0].completion == answer
    # decoding ended with the newline after the line, not at the end of the script
    assert stopped.completion_tokens == len(tokens_of("result = total / len(values)\n"))
    assert whole.completion_tokens == len(tokens_of(answer))


def test_shaping_settles_only_once_more_text_cannot_change_the_suggestion() -> None:
    line = Shaping("x = compute(", ")\nprint(x)\n", "", "x = compute(")
    assert not line.settled("a, b")
    assert line.settled("a, b)\n")  # the line is over: whatever follows is cut
    block = Shaping("def f(n):\n", "", "", "")
    assert not block.settled("    if n:\n        return 1\n")  # the body may go on
    assert block.settled("    if n:\n        return 1\n    return 0\n\ndef g")


async def test_completion_asks_the_engine_first_and_names_the_session() -> None:
    backend = FakeBackend()
    await CompletionService(backend).complete(CompletionRequest(PREFIX, SUFFIX, session="ed-1"))
    (params,) = backend.params
    assert params.session == "ed-1"
    assert params.priority == 0  # ahead of generation and chat, which default to 1
    assert params.until is not None


async def test_the_code_around_the_cursor_goes_to_the_engine_with_its_budgets() -> None:
    """Budgets in tokens, which only the engine can count; every infill path passes them."""
    backend = FakeBackend()
    settings = CompletionSettings(prefix_tokens=300, suffix_tokens=100, context_tokens=50)
    service = CompletionService(backend, settings)
    files = (SourceFile("util.py", "X = 1\n"),)
    await service.complete(CompletionRequest(PREFIX, SUFFIX, files=files, path="main.py"))
    await service.raw(PREFIX, SUFFIX, Sampling(max_tokens=16))
    await service.infill(InfillPrompt(PREFIX, SUFFIX), Sampling(max_tokens=16))
    budgets = [(p.prefix_budget, p.suffix_budget, p.files_budget) for p in backend.prompts]
    assert budgets == [(300, 100, 50), (300, 100, None), (300, 100, None)]
    unbounded = CompletionService(backend, CompletionSettings(prefix_tokens=None))
    await unbounded.raw(PREFIX, SUFFIX, Sampling(max_tokens=16))
    assert backend.prompts[-1].prefix_budget is None  # type: ignore[union-attr]


async def test_free_text_context_leads_the_prefix_outside_its_budget() -> None:
    """The engine cuts a long prefix from its start: the caller's context must not be what
    goes first."""
    backend = FakeBackend()
    await CompletionService(backend).complete(
        CompletionRequest(PREFIX, SUFFIX, context="Prices are in cents.\n")
    )
    (prompt,) = backend.prompts
    assert isinstance(prompt, InfillPrompt)
    code = heal_prefix(PREFIX)[0]  # the cursor's indentation goes back to the model's choice
    assert (prompt.lead, prompt.prefix) == ("Prices are in cents.\n\n", code)
    assert prompt.before_cursor == f"Prices are in cents.\n\n{code}"


async def test_a_raw_prompt_in_the_models_fim_markers_is_an_infill_prompt() -> None:
    """Editors (Continue) write the FIM prompt themselves and send it to /v1/completions."""
    backend = FakeBackend()
    service = CompletionService(backend)
    context = "<|repo_name|>demo\n<|file_sep|>util.py\nX = 1\n<|file_sep|>main.py\n"
    text = f"{context}<|fim_prefix|>def f():\n    <|fim_suffix|>\n<|fim_middle|>"
    generation = await service.raw(text, None, Sampling(max_tokens=16))
    assert backend.prompts[-1] == InfillPrompt(
        "def f():\n    ", "\n", context, prefix_budget=1536, suffix_budget=512
    )
    assert generation.choices[0].text == "return 42"  # the fake's answer to an infill prompt
    await service.raw("def f():\n    return", None, Sampling(max_tokens=16))
    assert backend.prompts[-1] == TextPrompt("def f():\n    return")


async def test_raw_infill_is_post_processed_only_when_asked() -> None:
    answer = "result = total / len(values)\n    return result\n\n\ndef other():\n    pass\n"
    backend = FakeBackend(rules=[Rule("total += v", answer)])
    service = CompletionService(backend)
    sampling = Sampling(max_tokens=64)
    raw = await service.raw(PREFIX, SUFFIX, sampling)
    shaped = await service.raw(PREFIX, SUFFIX, sampling, shaped=True)
    assert raw.choices[0].text == answer
    assert shaped.choices[0].text == "result = total / len(values)"
    assert "".join(t.text for t in shaped.choices[0].tokens).startswith(shaped.choices[0].text)
    assert shaped.completion_tokens < raw.completion_tokens  # decoding ended at the cut
    streamed = [d async for d in service.stream_raw(PREFIX, SUFFIX, sampling, shaped=True)]
    assert "".join(d.text for d in streamed) == "result = total / len(values)"


async def test_suggestions_that_cannot_fit_the_hole_are_left_out() -> None:
    prefix, suffix = "def area(r):\n    ", "\n    return result\n"
    rules = [Rule("def area(r):\n<fill>", "    ```\n")]  # the chat model's Markdown habit
    service = CompletionService(FakeBackend(rules=rules))
    kept = await service.complete(CompletionRequest(prefix, suffix, max_completions=1))
    assert kept.suggestions == []
    measured = await service.complete(
        CompletionRequest(prefix, suffix, max_completions=1, drop_misfits=False)
    )
    assert [s.completion for s in measured.suggestions] == ["```"]


def test_a_line_deadline_ends_an_answer_at_a_line_break_once_its_time_is_up() -> None:
    """llama.cpp's t_max_predict_ms: checked at the tokens that break a line."""
    up = LineDeadline(0.0)
    assert not up("x = 1") and up("x = 1\n")
    waiting = LineDeadline(3600.0)
    assert not waiting("x = 1") and not waiting("x = 1\n")
    assert LineDeadline(3600.0, then=lambda raw: raw.endswith("1"))("x = 1")
    # A new answer (n > 1) starts its own clock and its own newest token.
    shared = LineDeadline(0.0)
    assert shared("a\n") and not shared("b") and shared("b\n")


async def test_an_infill_budget_beyond_the_window_is_cut_to_what_the_window_leaves() -> None:
    """Continue asks for 4,096 tokens whatever the window: it gets an answer, not a 400."""
    prefix, suffix = "def add(a, b):\n    return ", "\n"
    backend = FakeBackend(rules=[Rule(f"{prefix}<fill>", "a + b")], context_length=64)
    service = CompletionService(backend)
    room = 64 - len(tokens_of(f"{prefix}<fill>{suffix}"))
    generation = await service.raw(prefix, suffix, Sampling(max_tokens=4096))
    assert generation.choices[0].text == "a + b" and backend.params[-1].max_tokens == room
    streamed = service.stream_raw(prefix, suffix, Sampling(max_tokens=4096))
    assert "".join([d.text async for d in streamed]) == "a + b"
    assert backend.params[-1].max_tokens == room
    with pytest.raises(InvalidRequest, match="context window is 64 tokens"):
        await service.raw("x = 1\n" * 40, suffix, Sampling(max_tokens=4096))
