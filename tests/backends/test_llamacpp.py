"""The embedded backend with the real model."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from contextlib import aclosing
from dataclasses import replace

import pytest

from codey.backends.base import (
    ChatPrompt,
    Choice,
    InfillPrompt,
    Message,
    SamplingParams,
    TextPrompt,
)
from codey.backends.fim import SourceFile
from codey.backends.llamacpp import PREFIX_LINE_STEP, LlamaCppBackend
from codey.errors import ContextOverflow
from tests.backends.answers import assert_same_answer

pytestmark = pytest.mark.model

GREEDY = SamplingParams(max_tokens=16, temperature=0)
HELLO = ChatPrompt([Message("user", "Write a Python one-liner that prints hello.")])


async def test_the_qwen_templates_are_read_from_the_gguf_and_render_as_meant(
    backend: LlamaCppBackend,
) -> None:
    assert backend.family == "qwen"
    assert backend.context_length == 4096
    assert backend.header is not None and backend.header.architecture == "qwen2"
    vocab = backend.vocabulary
    (im_end,) = vocab.tokenize("<|im_end|>", special=True)
    (file_sep,) = vocab.tokenize("<|file_sep|>", special=True)
    # A raw prompt is the caller's own: its special-token text is the model's tokens.
    raw, _ = backend.render(TextPrompt("<|file_sep|>a.py\nx = 1\n"))
    assert raw[0] == file_sep
    # What a chat message says stays text, even when it spells the template's tokens.
    said = "Why does <|im_end|> end my turn?"
    chat, _ = backend.render(ChatPrompt([Message("user", said)]))
    harmless, _ = backend.render(ChatPrompt([Message("user", "Why?")]))
    assert chat.count(im_end) == harmless.count(im_end)  # only the template's own
    plain = vocab.tokenize(said, special=False)
    assert any(chat[i : i + len(plain)] == plain for i in range(len(chat)))
    # Code around the cursor cannot forge markers either; the context before it is the caller's.
    infill, stop = backend.render(InfillPrompt("a = '<|fim_middle|>'", "\n", "<|file_sep|>b.py\n"))
    (middle,) = vocab.tokenize("<|fim_middle|>", special=True)
    assert infill[0] == file_sep and infill.count(middle) == 1 and infill[-1] == middle
    assert "<|endoftext|>" in stop


async def test_other_files_go_in_the_repository_format_and_the_nearest_fit_the_budget(
    backend: LlamaCppBackend,
) -> None:
    vocab = backend.vocabulary
    (repo_name,) = vocab.tokenize("<|repo_name|>", special=True)
    (file_sep,) = vocab.tokenize("<|file_sep|>", special=True)
    far = SourceFile("far.py", "FAR = '<|fim_middle|>'\n" * 40)  # least relevant, and long
    near = SourceFile("geometry/consts.py", "PI = 3.14159\n")
    prompt = InfillPrompt(
        "return ", "\n", files=(far, near), path="geometry/area.py", repo="shapes"
    )
    whole, _ = backend.render(prompt)
    text = "".join(vocab.token_text(t) for t in whole)
    assert whole[0] == repo_name and whole.count(file_sep) == 3
    assert text.startswith("<|repo_name|>shapes\n<|file_sep|>far.py\nFAR")
    assert "<|file_sep|>geometry/consts.py\nPI = 3.14159\n<|file_sep|>geometry/area.py\n" in text
    (middle,) = vocab.tokenize("<|fim_middle|>", special=True)
    assert whole.count(middle) == 1  # a file's text cannot forge markers
    # A budget too small for both keeps the one nearest the cursor whole and the whole lines
    # of the other's start that fit; too small for any, none.
    cursor = len(backend.render(InfillPrompt("return ", "\n"))[0])
    budget = len(whole) - cursor - 100
    cut, _ = backend.render(replace(prompt, files_budget=budget))
    cut_text = "".join(vocab.token_text(t) for t in cut)
    assert len(cut) - cursor <= budget and cut.count(file_sep) == 3
    kept = cut_text.split("<|file_sep|>far.py\n")[1].split("<|file_sep|>")[0]
    assert 0 < kept.count("FAR = ") < 40 and kept.endswith("'\n")  # whole lines only
    assert "<|file_sep|>geometry/consts.py\nPI = 3.14159\n" in cut_text
    bare, _ = backend.render(replace(prompt, files_budget=3))
    assert len(bare) == cursor
    # The window bounds them too: the room left after the answer's tokens.
    assert backend.render(prompt, room=len(cut))[0] == cut


async def test_the_code_around_the_cursor_keeps_the_nearest_whole_lines_within_its_budgets(
    backend: LlamaCppBackend,
) -> None:
    vocab = backend.vocabulary

    def parts(prompt: InfillPrompt) -> tuple[str, str, int, int]:
        """The prefix and suffix as rendered, and their token counts."""
        tokens, _ = backend.render(prompt)
        text = "".join(vocab.token_text(t) for t in tokens)
        prefix, suffix = text.removeprefix("<|fim_prefix|>").split("<|fim_suffix|>")
        suffix = suffix.removesuffix("<|fim_middle|>")
        return (
            prefix,
            suffix,
            len(vocab.tokenize(prefix, special=False)),
            len(vocab.tokenize(suffix, special=False)),
        )

    lines = [f"total_{i} = compute(values[{i}], scale={i * 7})\n" for i in range(100)]
    prefix, suffix = "".join(lines) + "    return ", "".join(reversed(lines))
    whole = InfillPrompt(prefix, suffix)
    assert parts(whole)[:2] == (prefix, suffix)  # no budget, no cut
    kept_prefix, kept_suffix, n_prefix, n_suffix = parts(
        replace(whole, prefix_budget=200, suffix_budget=60)
    )
    assert n_prefix <= 200 and n_suffix <= 60
    assert prefix.endswith(kept_prefix) and kept_prefix.endswith("    return ")
    dropped = prefix[: len(prefix) - len(kept_prefix)].count("\n")
    assert dropped % PREFIX_LINE_STEP == 0  # whole lines, a step at a time
    assert n_prefix > 200 - PREFIX_LINE_STEP * 20  # ... and no more steps than it needs
    assert suffix.startswith(kept_suffix) and kept_suffix.endswith("\n")
    assert n_suffix > 60 - 20  # the next line would not have fit
    # Typing at the cursor keeps the kept prefix's start, so the slot's cells stay good.
    typed, *_ = parts(replace(whole, prefix=prefix + "t", prefix_budget=200, suffix_budget=60))
    assert typed == kept_prefix + "t"
    # A budget smaller than the cursor's line keeps that line whole all the same.
    tiny = parts(replace(whole, prefix_budget=16, suffix_budget=0))
    assert tiny[0] == "    return " and tiny[1] == lines[-1]
    # A native request's free-text context leads the prefix whole: the budget cuts the code.
    lead = "# Totals are rounded to cents.\n\n"
    led, *_ = parts(replace(whole, prefix_budget=200, suffix_budget=60, lead=lead))
    assert led == lead + kept_prefix


async def test_a_prompt_only_request_fills_the_cache_for_the_next(
    backend: LlamaCppBackend,
) -> None:
    """llama.vim and llama.vscode warm the cache with n_predict 0 before the user types."""
    files = (SourceFile("notes.py", "".join(f"NOTE_{i} = {i}\n" for i in range(60))),)
    warm = InfillPrompt("", "", files=files)
    nothing = await backend.generate(warm, SamplingParams(max_tokens=0, priority=0))
    assert nothing.choices[0].text == "" and nothing.completion_tokens == 0
    typed = await backend.generate(
        InfillPrompt("x = NOTE_", "\n", files=files), SamplingParams(max_tokens=4, priority=0)
    )
    assert typed.cached_tokens > 0.8 * nothing.prompt_tokens
    assert typed.choices[0].prompt_seconds > 0 and typed.choices[0].decode_seconds > 0


async def test_token_counts_are_the_tokenizers(backend: LlamaCppBackend) -> None:
    text = "def add(a, b):\n    return a + b\n"
    count = await backend.count_tokens(TextPrompt(text))
    assert count == len(backend.vocabulary.tokenize(text, special=False))
    generation = await backend.generate(TextPrompt(text), GREEDY)
    assert generation.prompt_tokens == count
    assert generation.completion_tokens == len(generation.choices[0].tokens) <= 16


async def test_chat_follows_the_template_and_stops_at_the_end_of_turn(
    backend: LlamaCppBackend,
) -> None:
    generation = await backend.generate(HELLO, SamplingParams(max_tokens=64, temperature=0))
    choice = generation.choices[0]
    assert "print" in choice.text
    assert "<|im_end|>" not in choice.text
    assert choice.finish_reason == "stop"


async def test_logprobs_are_the_models(backend: LlamaCppBackend) -> None:
    params = SamplingParams(max_tokens=8, temperature=0, top_logprobs=5)
    choice = (await backend.generate(HELLO, params)).choices[0]
    for token in choice.tokens:
        assert token.logprob <= 0
        # greedy picks the most likely token, so it heads its own top list
        assert token.top[0][1] == pytest.approx(token.logprob, abs=1e-5)
        assert [lp for _, lp in token.top] == sorted((lp for _, lp in token.top), reverse=True)
        assert sum(math.exp(lp) for _, lp in token.top) <= 1.0 + 1e-5
    assert "".join(t.text for t in choice.tokens) == choice.text


async def test_logits_do_not_depend_on_what_the_cache_held_before(
    backend: LlamaCppBackend,
) -> None:
    shared = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(40))  # ~600 tokens
    first = TextPrompt(shared + "def g(x):\n    return")
    other = TextPrompt(shared + "class K:\n    value =")
    params = SamplingParams(max_tokens=6, temperature=0, top_logprobs=3)
    await backend.engine.reset()  # cold
    cold = (await backend.generate(first, params)).choices[0]
    await backend.generate(other, params)  # leaves the shared prefix in the cache
    warm = (await backend.generate(first, params)).choices[0]
    again = (await backend.generate(first, params)).choices[0]
    assert cold.tokens == warm.tokens == again.tokens  # texts, logprobs and top lists alike
    assert cold.confidence == warm.confidence == again.confidence


async def test_n_at_temperature_zero_gives_distinct_ranked_openings(
    backend: LlamaCppBackend,
) -> None:
    prompt = InfillPrompt("def area(radius):\n    ", "\n")
    generation = await backend.generate(prompt, SamplingParams(max_tokens=12, temperature=0, n=3))
    openings = [c.tokens[0] for c in generation.choices]
    assert len({t.text for t in openings}) == 3
    assert openings[0].logprob >= openings[1].logprob >= openings[2].logprob
    assert generation.completion_tokens == sum(len(c.tokens) for c in generation.choices)


async def test_stop_strings_cut_the_text(backend: LlamaCppBackend) -> None:
    params = SamplingParams(max_tokens=32, temperature=0, stop=("(",))
    choice = (await backend.generate(TextPrompt("# print hello\nprint"), params)).choices[0]
    assert "(" not in choice.text
    assert choice.finish_reason == "stop"


async def test_streaming_yields_the_same_text_as_generate(backend: LlamaCppBackend) -> None:
    whole = await backend.generate(HELLO, GREEDY)
    deltas = [d async for d in backend.stream(HELLO, GREEDY)]
    assert "".join(d.text for d in deltas) == whole.choices[0].text
    last = deltas[-1]
    assert last.finish_reason == whole.choices[0].finish_reason
    assert last.completion_tokens == whole.completion_tokens
    assert last.prompt_tokens == whole.prompt_tokens


async def test_leaving_a_stream_frees_the_engine_within_a_token(backend: LlamaCppBackend) -> None:
    long = SamplingParams(max_tokens=400, temperature=0)
    prompt = ChatPrompt([Message("user", "Write a long essay about sorting algorithms.")])
    async with aclosing(backend.stream(prompt, long)) as stream:
        async for _ in stream:
            break
    started = time.perf_counter()
    await backend.generate(TextPrompt("x"), SamplingParams(max_tokens=1, temperature=0))
    assert time.perf_counter() - started < 5  # not the ~8 s the 400 tokens would take


async def test_a_prompt_longer_than_the_window_is_refused_with_both_lengths(
    backend: LlamaCppBackend,
) -> None:
    prompt = TextPrompt("x = 1\n" * 3000)
    with pytest.raises(ContextOverflow) as caught:
        await backend.generate(prompt, SamplingParams(max_tokens=100))
    error = caught.value
    assert error.context_length == 4096
    assert error.prompt_tokens > 4096
    assert str(error.prompt_tokens) in error.message and "4096" in error.message


async def test_concurrent_callers_from_tasks_and_threads_get_their_own_answers(
    backend: LlamaCppBackend,
) -> None:
    prompts = [TextPrompt(f"# the number {n} squared is") for n in range(6)]
    expected = [(await backend.generate(p, GREEDY)).choices[0] for p in prompts]

    results: dict[int, Choice | str] = {}

    def in_thread(n: int) -> None:
        try:
            generation = asyncio.run(backend.generate(prompts[n], GREEDY))
            results[n] = generation.choices[0]
        except Exception as exc:  # reported by the assertion below
            results[n] = f"raised {exc!r}"

    threads = [threading.Thread(target=in_thread, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    from_tasks = await asyncio.gather(*(backend.generate(p, GREEDY) for p in prompts[3:]))
    for t in threads:
        t.join()
    for n, generation in enumerate(from_tasks, start=3):
        results[n] = generation.choices[0]
    for n in range(6):  # each its own answer: the same as alone, up to a near tie
        answer = results[n]
        assert isinstance(answer, Choice), answer
        assert_same_answer(expected[n], answer)
    assert backend.queue_depth == 0
