"""Continuous batching on the real model, in this process: shared steps, slots that keep their
client's prompt, completion first without starvation, cancellation within a step."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from codey.backends.base import ChatPrompt, Choice, Message, SamplingParams
from codey.backends.batcher import Batcher, Request, _common_prefix
from codey.backends.engine import LlamaEngine, Piece
from codey.backends.llamacpp import LlamaCppBackend
from tests.backends.answers import assert_same_answer

pytestmark = pytest.mark.model

GREEDY = SamplingParams(max_tokens=12, temperature=0)
CODE = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(40))  # ~700 tokens


@pytest.fixture(scope="module")
def engine(backend: LlamaCppBackend) -> Iterator[LlamaEngine]:
    engine = LlamaEngine(
        Path(backend.engine.spec.path), context_length=2048, threads=2, batch_size=512, slots=3
    )
    yield engine
    engine.close()


@pytest.fixture
def batcher(engine: LlamaEngine) -> Iterator[Batcher]:
    engine.reset()
    batcher = Batcher(engine)
    yield batcher
    batcher.close()


def tokens(engine: LlamaEngine, text: str) -> list[int]:
    return engine.tokenize(text, special=False, add_bos=True)


REVIEWER = Message(
    "system",
    "You are a careful reviewer of Python code in a large company. You answer in one short "
    "sentence, name the function you talk about, and never write code blocks.",
)
"""A system prompt longer than half of each chat below, so that a slot keeping it is worth
taking."""


def chat(backend: LlamaCppBackend, question: str) -> list[int]:
    """A first turn after REVIEWER, rendered by the model's template."""
    return backend.render(ChatPrompt([REVIEWER, Message("user", question)]))[0]


class Tracker:
    """Submits requests and records the order in which their first tokens and answers came."""

    def __init__(self, batcher: Batcher) -> None:
        self.batcher = batcher
        self.first_token: list[str] = []
        self.deltas: list[str] = []
        """The request of each delta, in order."""
        self.answers: dict[str, list[Choice] | str] = {}
        self._done: dict[str, threading.Event] = {}
        self._ids = iter(range(1, 10_000))

    def submit(self, name: str, prompt: list[int], params: SamplingParams) -> int:
        done = self._done[name] = threading.Event()
        started = False

        def on_delta(_: object) -> None:
            nonlocal started
            self.deltas.append(name)
            if not started:
                started = True
                self.first_token.append(name)

        def settle(value: list[Choice] | str) -> None:
            self.answers[name] = value
            done.set()

        request_id = next(self._ids)
        request = Request(
            request_id,
            prompt,
            params,
            (),
            on_done=lambda choices, _: settle(choices),
            on_error=settle,
            on_delta=on_delta,
        )
        self.batcher.submit(request)
        return request_id

    def wait(self, *names: str, timeout: float = 120) -> None:
        for name in names:
            assert self._done[name].wait(timeout), f"{name} did not finish"


def test_a_request_alone_does_not_depend_on_what_other_slots_hold(
    engine: LlamaEngine, batcher: Batcher
) -> None:
    prompt = tokens(engine, CODE + "def g(x):\n    return")
    params = SamplingParams(max_tokens=8, temperature=0, top_logprobs=3)
    cold = batcher.run(prompt, params)[0]
    for text in ("class K:\n    value =", "import os\nprint(", CODE + "# end"):
        batcher.run(tokens(engine, text), SamplingParams(max_tokens=4, temperature=0))
    warm = batcher.run(prompt, params)[0]
    assert cold.tokens == warm.tokens  # texts, logprobs and top lists alike


def test_concurrent_requests_share_steps_and_each_gets_its_own_answer(
    engine: LlamaEngine, batcher: Batcher
) -> None:
    prompts = [tokens(engine, f"# the number {n} squared is") for n in range(3)]
    alone = [batcher.run(p, GREEDY)[0] for p in prompts]
    steps_before, decoded_before = batcher.stats.steps, batcher.stats.decoded
    tracker = Tracker(batcher)
    for n, prompt in enumerate(prompts):
        tracker.submit(str(n), prompt, GREEDY)
    tracker.wait("0", "1", "2")
    together: list[Choice] = []
    for n in range(3):
        answer = tracker.answers[str(n)]
        assert isinstance(answer, list) and len(answer) == 1
        together.append(answer[0])
    decoded = batcher.stats.decoded - decoded_before
    assert decoded == sum(len(c.tokens) for c in together)
    assert batcher.stats.steps - steps_before < decoded  # answers advanced in shared steps
    for one, batched in zip(alone, together, strict=True):
        assert_same_answer(one, batched)


def test_a_burst_reaching_an_idle_batcher_a_millisecond_apart_is_read_in_one_step(
    engine: LlamaEngine, batcher: Batcher
) -> None:
    prompts = [tokens(engine, f"# the number {n} cubed is") for n in range(3)]
    steps: list[int] = []
    decode = engine.decode

    def record(pieces: Sequence[Piece]) -> list[int]:
        steps.append(len(pieces))
        return decode(pieces)

    engine.decode = record  # type: ignore[method-assign]
    try:
        tracker = Tracker(batcher)
        for n, prompt in enumerate(prompts):
            tracker.submit(str(n), prompt, GREEDY)
            time.sleep(0.0005)
        tracker.wait("0", "1", "2")
    finally:
        del engine.decode
    assert steps[0] == 3  # not one prompt alone, then the two that came a millisecond later


def test_a_prompt_read_beside_a_decoding_answer_takes_one_step(
    engine: LlamaEngine, batcher: Batcher
) -> None:
    # Alone, a prompt is read in pieces (then its last token alone) so that it is exact; beside
    # another sequence it cannot be, and every extra step delays both.
    pieces: list[tuple[int, int]] = []
    decode = engine.decode

    def record(step: Sequence[Piece]) -> list[int]:
        pieces.extend((piece.seq, len(piece.tokens)) for piece in step)
        return decode(step)

    engine.decode = record  # type: ignore[method-assign]
    try:
        tracker = Tracker(batcher)
        tracker.submit("long", tokens(engine, CODE[:200]), replace(GREEDY, max_tokens=40))
        while not tracker.first_token:
            time.sleep(0.01)
        seqs = {seq for seq, _ in pieces}
        second = tokens(engine, "# a second client asks for the sum of two numbers\ndef add(a, b):")
        tracker.submit("second", second, GREEDY)
        tracker.wait("long", "second")
    finally:
        del engine.decode
    read = [size for seq, size in pieces if seq not in seqs and size > 1]
    assert read == [len(second)]
    answer = tracker.answers["second"]
    assert isinstance(answer, list) and answer[0].text


def test_a_client_keeps_its_prompt_cached_while_another_types(
    engine: LlamaEngine, batcher: Batcher
) -> None:
    a = CODE + "def area(r):\n    return 3.14 * r"
    b = "".join(f"class C{i}:\n    size = {i}\n\n" for i in range(60))
    params = SamplingParams(max_tokens=2, temperature=0)
    batcher.run(tokens(engine, a), params)
    batcher.run(tokens(engine, b), params)
    reused = batcher.stats.reused
    edited = tokens(engine, a + " *")
    batcher.run(edited, params)
    # All but the last unaligned piece of the prompt came from client A's slot.
    assert batcher.stats.reused - reused >= len(edited) - 2 * batcher.chunk
    # A completion (priority 0) reuses the whole shared start: a keystroke reads what it added.
    typed = tokens(engine, a + " * 2")
    reused = batcher.stats.reused
    batcher.run(typed, SamplingParams(max_tokens=2, temperature=0, priority=0))
    assert batcher.stats.reused - reused >= len(typed) - 4


def test_a_session_gets_the_slot_it_used_last(engine: LlamaEngine, batcher: Batcher) -> None:
    params = SamplingParams(max_tokens=1, temperature=0, session="editor-1")
    batcher.run(tokens(engine, CODE), params)
    (slot,) = [s for s in batcher.slots if s.session == "editor-1"]
    other = SamplingParams(max_tokens=1, temperature=0)
    for text in ("x = 1", "y = 2", "z = 3"):  # more prompts than free slots
        batcher.run(tokens(engine, text), other)
    assert slot.session == "editor-1"
    batcher.run(tokens(engine, "unrelated = True"), params)
    assert slot.prompt == tokens(engine, "unrelated = True")


def test_pieces_in_any_order_get_their_own_logits(engine: LlamaEngine) -> None:
    """The engine hands llama.cpp the pieces in sequence order; the step indices it returns
    follow the order it was given."""
    prompts = {0: tokens(engine, "1, 2, 3, 4,"), 1: tokens(engine, "The capital of France is")}

    def top(pieces: list[Piece]) -> list[int]:
        engine.reset()
        return [int(np.argmax(engine.logits(i))) for i in engine.decode(pieces)]

    alone = [top([Piece(seq, 0, prompts[seq])])[0] for seq in (0, 1)]
    assert alone[0] != alone[1]
    assert top([Piece(1, 0, prompts[1]), Piece(0, 0, prompts[0])]) == alone[::-1]
    engine.reset()


def test_a_request_with_nothing_to_reuse_joins_the_busy_sequences(
    engine: LlamaEngine, batcher: Batcher
) -> None:
    """llama.cpp steps a run of consecutive sequences in one pass, and each further run in
    another: a new request takes the idle slot next to a busy one over the least recent."""
    one = SamplingParams(max_tokens=1, temperature=0)
    batcher.run(tokens(engine, "x = 1"), one)  # slot 0, then slot 1: each the least recent
    batcher.run(tokens(engine, "y = 2"), one)
    tracker = Tracker(batcher)
    tracker.submit("long", tokens(engine, "# count to a hundred\n1, 2, 3,"), GREEDY)
    while not tracker.first_token:  # slot 2, the only one without a prompt
        time.sleep(0.01)
    assert batcher.slots[2].request is not None
    z = tokens(engine, "z = 3")
    batcher.run(z, one)
    assert batcher.slots[1].prompt[: len(z)] == z  # beside slot 2, not the older slot 0
    tracker.wait("long")


def test_completion_is_scheduled_before_waiting_chats_and_chats_are_not_starved(
    engine: LlamaEngine,
) -> None:
    batcher = Batcher(engine, aging=2.0)
    try:
        tracker = Tracker(batcher)
        long = SamplingParams(max_tokens=40, temperature=0)
        for n in range(3):  # every slot busy
            tracker.submit(f"busy{n}", tokens(engine, f"# essay number {n}\n"), long)
        time.sleep(0.3)
        tracker.submit("chat", tokens(engine, "# a chat"), SamplingParams(max_tokens=2))
        time.sleep(0.05)
        quick = SamplingParams(max_tokens=2, temperature=0, priority=0)
        tracker.submit("completion", tokens(engine, "import nump"), quick)
        tracker.wait("busy0", "busy1", "busy2", "chat", "completion")
        assert tracker.first_token.index("completion") < tracker.first_token.index("chat")

        # A chat that has waited past the aging time goes before a fresh completion.
        for n in range(3):
            tracker.submit(f"again{n}", tokens(engine, f"# essay number {n}\n"), long)
        time.sleep(0.2)
        tracker.submit("patient", tokens(engine, "# a chat"), SamplingParams(max_tokens=2))
        time.sleep(2.5)
        tracker.submit("late", tokens(engine, "import nump"), quick)
        tracker.wait("again0", "again1", "again2", "patient", "late")
        assert tracker.first_token.index("patient") < tracker.first_token.index("late")
    finally:
        batcher.close()


def test_background_work_fills_spare_slots_and_pauses_for_interactive_requests(
    engine: LlamaEngine, batcher: Batcher
) -> None:
    prompt = tokens(engine, "# the number 3 squared is")
    alone = batcher.run(prompt, GREEDY)[0]
    tracker = Tracker(batcher)
    batch = SamplingParams(max_tokens=30, temperature=0, background=True)
    for n in range(2):
        tracker.submit(f"batch{n}", tokens(engine, f"# essay number {n}\n"), batch)
    while "batch0" not in tracker.first_token:
        time.sleep(0.01)
    tracker.submit("interactive", prompt, GREEDY)
    tracker.wait("interactive", "batch0", "batch1")
    # Of three slots, two stay free for interactive requests: one background line at a time.
    assert tracker.deltas.index("batch1") > len(tracker.deltas) - 1 - tracker.deltas[::-1].index(
        "batch0"
    )
    # While the interactive request ran, the background line sat out every step ...
    mine = [i for i, name in enumerate(tracker.deltas) if name == "interactive"]
    assert set(tracker.deltas[mine[0] : mine[-1]]) == {"interactive"}
    # ... so the interactive answer is exactly its answer alone, and the line still finished.
    interactive = tracker.answers["interactive"]
    assert isinstance(interactive, list) and interactive[0].tokens == alone.tokens
    for n in range(2):
        answer = tracker.answers[f"batch{n}"]
        assert isinstance(answer, list) and answer[0].text


def test_a_long_prompt_is_read_in_chunks_beside_decoding_answers(
    engine: LlamaEngine, batcher: Batcher
) -> None:
    tracker = Tracker(batcher)
    tracker.submit("decoding", tokens(engine, "# count to fifty\n1, 2,"), SamplingParams(60, 0))
    time.sleep(0.5)
    before = batcher.stats.largest_step
    tracker.submit("reading", tokens(engine, CODE), SamplingParams(max_tokens=2, temperature=0))
    tracker.wait("decoding", "reading")
    assert before <= batcher.chunk + 1
    assert batcher.stats.largest_step <= batcher.chunk + 1


def test_cancelling_frees_the_slot_within_a_step(engine: LlamaEngine, batcher: Batcher) -> None:
    tracker = Tracker(batcher)
    request_id = tracker.submit("long", tokens(engine, "# essay\n"), SamplingParams(2000, 0))
    time.sleep(0.5)
    batcher.cancel(request_id)
    deadline = time.monotonic() + 2
    while any(s.request is not None for s in batcher.slots):
        assert time.monotonic() < deadline, "the slot was not freed"
        time.sleep(0.01)
    assert "long" not in tracker.answers
    assert batcher.run(tokens(engine, "x ="), SamplingParams(max_tokens=1, temperature=0))


def test_a_keystroke_before_a_long_suffix_moves_the_suffix_instead_of_reading_it(
    backend: LlamaCppBackend, engine: LlamaEngine
) -> None:
    with pytest.raises(ValueError, match="shared pool"):
        Batcher(engine, shift=32)  # a stream per sequence cannot lend cells
    pooled = LlamaEngine(
        Path(backend.engine.spec.path), context_length=2048, threads=2, batch_size=512, slots=2,
        shared_pool=True,
    )  # fmt: skip
    batcher = Batcher(pooled, shift=32)  # off by default (model.shift_tokens)
    try:
        _moves_the_suffix(pooled, batcher)
    finally:
        batcher.close()
        pooled.close()


def _moves_the_suffix(engine: LlamaEngine, batcher: Batcher) -> None:
    head = "import math\n\n\ndef area(r):\n    return math.pi * r"
    tail = "\n\n\n" + CODE  # the code after the cursor, much longer than a chunk
    params = SamplingParams(max_tokens=4, temperature=0)
    batcher.run(tokens(engine, head + tail), params)
    before = batcher.stats.shifted
    typed = tokens(engine, head + " *" + tail)
    answer = batcher.run(typed, params)[0]
    moved = batcher.stats.shifted - before
    assert moved >= len(tokens(engine, CODE)) - 2  # the suffix's cells were moved, not read
    assert answer.tokens and all(t.logprob <= 0 for t in answer.tokens)
    # the next prompt that shares only a prefix with it reads its own end in full
    again = batcher.stats.shifted
    batcher.run(tokens(engine, head + " * r\n"), params)
    assert batcher.stats.shifted == again


def test_drafts_from_the_prompt_are_checked_in_one_step_and_change_nothing(
    engine: LlamaEngine, batcher: Batcher
) -> None:
    # The model goes on with the prompt's pattern, so the prompt's n-grams guess well; what it
    # accepts costs no step of its own.
    prompt = tokens(engine, CODE + "def f40(x):\n    return x * 40 + 5\n\n")
    plain = SamplingParams(max_tokens=40, temperature=0, top_logprobs=2)
    alone = batcher.run(prompt, plain)[0]
    steps, decoded = batcher.stats.steps, batcher.stats.decoded
    drafted = batcher.run(prompt, replace(plain, draft=8))[0]
    accepted = batcher.stats.accepted
    assert accepted > 10 and batcher.stats.drafted >= accepted
    assert batcher.stats.decoded - decoded == len(drafted.tokens)
    assert batcher.stats.steps - steps <= len(drafted.tokens) - accepted + 1
    assert_same_answer(alone, drafted)


def test_chats_with_the_same_system_prompt_reuse_it_and_get_their_cold_answers(
    batcher: Batcher, backend: LlamaCppBackend
) -> None:
    params = SamplingParams(max_tokens=8, temperature=0, top_logprobs=2)
    first, second = chat(backend, "What does zip do?"), chat(backend, "What does enumerate do?")
    batcher.run(first, params)
    reused = batcher.stats.reused
    warm = batcher.run(second, params)[0]
    # The system prompt's turn ends inside the first chunk, and is reused whole.
    assert 0 < batcher.stats.reused - reused <= _common_prefix(first, second) < batcher.chunk
    forgotten = threading.Event()
    batcher.reset(forgotten.set)
    assert forgotten.wait(30)
    alone = batcher.run(second, params)[0]
    assert warm.tokens == alone.tokens  # texts, logprobs and top lists alike


def test_a_chat_read_beside_others_reuses_the_whole_start_it_shares_as_llama_servers_do(
    engine: LlamaEngine, batcher: Batcher, backend: LlamaCppBackend
) -> None:
    first = chat(backend, "What does zip do with lists?")
    again = chat(backend, "What does zip do with tuples?")
    shared = _common_prefix(first, again)
    turn_end = max(i + 1 for i, t in enumerate(first[:shared]) if engine.is_eog(t))
    assert shared > turn_end + 4  # the user's turn opens alike too
    params = SamplingParams(max_tokens=4, temperature=0)
    batcher.run(first, params)
    tracker = Tracker(batcher)
    tracker.submit("long", tokens(engine, CODE), SamplingParams(max_tokens=60, temperature=0))
    while not tracker.first_token:
        time.sleep(0.01)
    reused = batcher.stats.reused
    tracker.submit("beside", again, params)
    tracker.wait("beside", "long")
    # Read beside an answer being decoded, it cannot be exact anyway: it reads only what
    # differs, not the whole user's turn again ...
    assert batcher.stats.reused - reused == shared
    # ... while alone it reuses the system turn only, so that it gets its cold answer.
    reused = batcher.stats.reused
    batcher.run(chat(backend, "What does zip do with sets?"), params)
    assert batcher.stats.reused - reused == turn_end


def test_an_answer_nobody_scores_is_the_same_answer_without_log_probabilities(
    engine: LlamaEngine, batcher: Batcher
) -> None:
    prompt = tokens(engine, CODE + "def h(x):\n    return")
    scored = batcher.run(prompt, GREEDY)[0]
    unscored = batcher.run(prompt, replace(GREEDY, logprobs=False))[0]
    assert unscored.text == scored.text
    assert [t.text for t in unscored.tokens] == [t.text for t in scored.tokens]
    assert all(t.logprob is not None and t.logprob <= 0 for t in scored.tokens)
    assert all(t.logprob is None and t.top == () for t in unscored.tokens)
