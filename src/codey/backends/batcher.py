"""Continuous batching over the engine's sequences: every step is one `llama_decode` carrying a
token of each answer being decoded and a chunk of a prompt being read.

- **Slots remember their client.** Each slot is one sequence of the KV cache and keeps the last
  prompt it read. A request goes to the idle slot its session last used, else to the one whose
  prompt shares the longest prefix with its own (as llama.cpp's server picks), else to the
  least recently used; only the part of the prompt that differs is evaluated again.
- **Completion first, nobody starves.** Requests wait in order of priority (lower first), and
  every `aging` seconds of waiting count as one step of priority.
- **Batch work fills what is left.** A background request (a batch job's line) takes a slot
  only while `reserve` others stay idle for interactive requests, and its sequence sits out
  every step in which an interactive request is being read or answered: it pauses, its cells
  kept, instead of slowing the others down.
- **Chunked prefill.** While answers are being decoded, a step reads at most one chunk of
  prompt, so a long prompt slows the others down instead of stopping them.
- **Exact alone.** Prompts are read in chunks aligned to multiples of `chunk` that also end
  after each end-of-turn token, then the last token alone, and only whole such chunks are
  reused (or the whole prompt, when it is the same as the slot's last): a request alone gets
  the same logits whatever the cache held before, and chats that share a system prompt or
  earlier turns reuse them. A request batched with others shares its steps with their tokens,
  and llama.cpp's kernels round differently for other shapes, so it may differ in rare tokens;
  its prompt is then read in as few steps as there is room for, not in those pieces, and it
  reuses the whole start it shares with a slot's prompt, as llama.cpp's server does.
  Completions (priority 0) always reuse the whole shared start: a keystroke then costs what
  follows the cursor, and the cells differ from a cold read only by that same rounding.
- **Moving a shared end** (`shift`, off by default): the cells of the code after the cursor
  can be moved instead of read again, but they were computed before the keystroke, and the
  model then answers as if it had not been typed (bench/batching.py measured it), so it is
  left to other uses, such as context placed before the code.

n > 1 answers run one after another in the request's slot, each re-reading only the prompt's
last token. Everything here runs on the batcher's own thread; other threads talk to it through
its inbox.
"""

from __future__ import annotations

import functools
import itertools
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from codey.backends.base import Choice, SamplingParams
from codey.backends.decoding import Answer, OnDelta
from codey.backends.engine import LlamaEngine, Piece
from codey.backends.lookup import Lookup
from codey.errors import BackendError

PREFILL_CHUNK = 128
"""Prompt evaluation step; whole aligned chunks are what the KV cache reuses."""
AGING_SECONDS = 4.0
"""Waiting this long counts as one step of priority, so low priorities are never starved."""
RESERVED_SLOTS = 2
"""Slots background requests leave idle, so that interactive ones start at once."""
BURST_SECONDS = 0.005
"""How long an idle batcher waits for the rest of a burst (requests sent together through
the API reach it a few milliseconds apart) before its first step: a prompt read alone costs
the others a whole step's wait."""
STATS_INTERVAL = 0.5
_local_ids = itertools.count(-1, -1)


@dataclass(eq=False)
class Request:
    """One job from the server: `params.n` answers to the prompt `tokens`."""

    id: int
    tokens: list[int]
    params: SamplingParams
    stop: tuple[str, ...]
    on_done: Callable[[list[Choice], float], None]
    """Called with the answers and the decode rate (tokens/s) once all are finished."""
    on_error: Callable[[str], None]
    on_delta: OnDelta | None = None
    arrived: float = field(default_factory=time.monotonic)
    choices: list[Choice] = field(default_factory=list)
    seed: int = field(init=False)
    """The first answer's seed: the caller's, or a random one; answer i uses seed + i."""

    def __post_init__(self) -> None:
        p = self.params
        self.seed = p.seed if p.seed is not None else random.randrange(2**31)

    def urgency(self, now: float, aging: float) -> tuple[bool, float, float]:
        """Sort key: interactive before background, priority lowered by the time waited, then
        arrival."""
        p = self.params
        return (p.background, p.priority - (now - self.arrived) / aging, self.arrived)


@dataclass(eq=False)
class Slot:
    """One sequence of the KV cache and what it holds."""

    seq: int
    prompt: list[int] = field(default_factory=list)
    """The prompt tokens whose cells this sequence holds, read in the aligned chunks."""
    kv: int = 0
    """Positions this sequence holds in the KV cache (prompt and fed answer tokens)."""
    session: str | None = None
    background: bool = False
    """Whether batch work used it last: batch work keeps to such slots where it can, so that
    interactive prompts stay cached."""
    used: float = 0.0
    request: Request | None = None
    position: int = 0
    """The next prompt position to read."""
    answer: Answer | None = None
    feed: int | None = None
    """The answer's last sampled token, which the next step evaluates."""
    draft: list[int] = field(default_factory=list)
    """Tokens guessed to follow `feed` (prompt lookup), evaluated in the same step."""
    lookup: Lookup | None = None
    branch: int = 0
    """Which of the request's n answers is being decoded."""
    cached: int = 0
    """Prompt tokens of the request the cache held when its answer began."""
    skip: tuple[int, int, int] | None = None
    """(start, end, resume): the prompt's [start, end) is being read on the scratch sequence,
    in front of the cells moved to [end, resume) from the slot's last prompt."""


@dataclass
class Stats:
    """Counters since the engine started, and what is happening now."""

    steps: int = 0
    step_tokens: int = 0
    decoded: int = 0
    """Answer tokens sampled."""
    prefilled: int = 0
    reused: int = 0
    shifted: int = 0
    """Prompt tokens whose cells were moved from an earlier prompt instead of read again."""
    drafted: int = 0
    """Tokens guessed by prompt lookup and evaluated with an answer's next token."""
    accepted: int = 0
    """Guessed tokens the model sampled too, each one a step saved."""
    requests: int = 0
    slot_hits: int = 0
    active: int = 0
    waiting: int = 0
    kv_cells: int = 0
    slots: int = 0
    largest_step: int = 0
    decode_seconds: float = 0.0
    """Time spent in `llama_decode`; against the clock, how busy the engine is."""

    def snapshot(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Batcher:
    """Runs every request on `engine` in shared steps, on a thread of its own."""

    def __init__(
        self,
        engine: LlamaEngine,
        *,
        chunk: int = PREFILL_CHUNK,
        aging: float = AGING_SECONDS,
        shift: int = 0,
        reserve: int = RESERVED_SLOTS,
        on_stats: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.chunk = min(chunk, engine.batch_size)
        self.aging = aging
        if shift and not engine.shared_pool:
            raise ValueError("Moving a shared end lends cells between sequences: a shared pool.")
        self.shift = shift
        """Shared prompt ends at least this long are moved instead of read again; 0: never."""
        self.reserve = min(reserve, engine.slots - 1)
        self.on_stats = on_stats
        self.slots = [Slot(seq) for seq in range(engine.slots)]
        self.stats = Stats(slots=engine.slots)
        self.decode_rate = 0.0
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._waiting: list[Request] = []
        self._answered: list[Callable[[], None]] = []
        self._scratch: Slot | None = None
        """The slot reading on the engine's scratch sequence, if any."""
        self._stats_sent = 0.0
        self._thread = threading.Thread(target=self._loop, name="codey-batcher", daemon=True)
        self._thread.start()

    # -- any thread ----------------------------------------------------------------------------

    def submit(self, request: Request) -> None:
        self._inbox.put(("run", request))

    def cancel(self, request_id: int) -> None:
        """Stop a request within a step; it gets no answer."""
        self._inbox.put(("cancel", request_id))

    def reset(self, done: Callable[[], None]) -> None:
        """Forget every slot's cached prompt, then call `done`."""
        self._inbox.put(("reset", done))

    def run(
        self, tokens: list[int], params: SamplingParams, stop: tuple[str, ...] = ()
    ) -> list[Choice]:
        """Submit a request and wait for its answers (for code in the engine's own process)."""
        finished = threading.Event()
        outcome: list[Any] = []

        def settle(value: Any) -> None:
            outcome.append(value)
            finished.set()

        request = Request(next(_local_ids), tokens, params, stop, lambda c, _: settle(c), settle)
        self.submit(request)
        finished.wait()
        if isinstance(outcome[0], str):
            raise BackendError(outcome[0])
        choices: list[Choice] = outcome[0]
        return choices

    def close(self) -> None:
        self._inbox.put(("close", None))
        self._thread.join(timeout=30)

    # -- the batcher's thread ------------------------------------------------------------------

    def _loop(self) -> None:
        while self._drain(block=not self._busy()):
            try:
                self._step()
            except Exception as exc:  # a bug here must fail the requests, not strand them
                message = f"The engine's batcher failed: {exc!r}"
                for slot in self.slots:
                    if slot.request is not None:
                        self._fail(slot, message)
                for request in self._waiting:
                    request.on_error(message)
                self._waiting = []
        for slot in self.slots:
            if slot.request is not None:
                self._release(slot)

    def _step(self) -> None:
        self._admit()
        planned = self._plan()
        if not planned:
            return
        try:
            began = time.perf_counter()
            ends = self.engine.decode([piece for _, piece in planned])
            self.stats.decode_seconds += time.perf_counter() - began
        except BackendError as exc:
            for slot, _ in planned:
                self._fail(slot, exc.message)
            return
        self._count(planned)
        for (slot, piece), index in zip(planned, ends, strict=True):
            self._advance(slot, len(piece.tokens), index)
        self._report()
        # Answers go out after the counters, so whoever reads both sees their work counted.
        while self._answered:
            self._answered.pop(0)()

    def _busy(self) -> bool:
        return bool(self._waiting) or any(s.request is not None for s in self.slots)

    def _drain(self, *, block: bool) -> bool:
        """Take in what other threads sent; False once the batcher is closed. Woken from idle,
        it takes in what arrives within `BURST_SECONDS` too, so a burst starts in one step."""
        try:
            kind, value = self._inbox.get(block=block)
        except queue.Empty:
            return True
        until = time.monotonic() + BURST_SECONDS if block else 0.0
        while True:
            if kind == "close":
                return False
            if kind == "run":
                self._waiting.append(value)
                self.stats.requests += 1
            elif kind == "cancel":
                self._drop(value)
            elif kind == "reset":
                self._forget_all()
                value()
            try:
                kind, value = self._inbox.get(timeout=max(until - time.monotonic(), 0.0))
            except queue.Empty:
                return True

    def _drop(self, request_id: int) -> None:
        self._waiting = [r for r in self._waiting if r.id != request_id]
        for slot in self.slots:
            if slot.request is not None and slot.request.id == request_id:
                if slot.answer is not None:
                    slot.answer.end("cancelled")
                self._release(slot)

    def _forget_all(self) -> None:
        for slot in self.slots:
            slot.prompt = []  # an active slot reads its whole prompt again next time
            if slot.request is None:
                self.engine.forget(slot.seq)
                slot.kv = 0

    def _admit(self) -> None:
        """Give idle slots to the most urgent waiting requests."""
        now = time.monotonic()
        self._waiting.sort(key=lambda r: r.urgency(now, self.aging))
        idle = sum(s.request is None for s in self.slots)
        starting: list[Request] = []
        while self._waiting and idle > (self.reserve if self._waiting[0].params.background else 0):
            starting.append(self._waiting.pop(0))
            idle -= 1
        for request in starting:
            beside = len(starting) > 1 or self._steps_beside(request)
            self._start(self._slot_for(request, beside), request, beside=beside)

    def _steps_beside(self, request: Request) -> bool:
        """Whether `request` would share its steps with a busy sequence: an interactive one
        steps with the other interactive ones, batch work with everything busy."""
        return any(
            s.request is not None and (request.params.background or not s.request.params.background)
            for s in self.slots
        )

    def _slot_for(self, request: Request, beside: bool) -> Slot:
        idle = [s for s in self.slots if s.request is None]
        if request.params.background:
            idle = [s for s in idle if s.background or not s.prompt] or idle
        session = request.params.session
        if session is not None:
            for slot in idle:
                if slot.session == session:
                    return slot
        whole = _whole_start(request, beside)
        reusable = {id(s): self._saved(s, request.tokens, whole) for s in idle}
        best = max(idle, key=lambda s: (reusable[id(s)], s.used))
        # A slot is worth taking from whoever used it last only if it spares a real part of
        # the prompt (a shared chat template or FIM opening does not).
        if reusable[id(best)] >= min(self.chunk, len(request.tokens) // 2):
            return best
        # Nothing to reuse: spare other sessions' prompts, then keep the busy sequences together
        # (each run of consecutive ones costs llama.cpp a pass of the step), then spare any
        # cached prompt, then take the least recently used.
        busy = {s.seq for s in self.slots if s.request is not None}

        def apart(slot: Slot) -> bool:
            return bool(busy) and not {slot.seq - 1, slot.seq + 1} & busy

        return min(idle, key=lambda s: (s.session is not None, apart(s), bool(s.prompt), s.used))

    def _saved(self, slot: Slot, tokens: list[int], whole: bool) -> int:
        """Prompt tokens `slot` spares a request: its shared start, and its shared end if that
        is worth moving."""
        keep = self._reusable(slot, tokens, whole)
        if not self.shift:
            return keep
        moved = _shared_end(slot.prompt, tokens, keep) - 1
        return keep + (moved if moved >= self.shift else 0)

    def _reusable(self, slot: Slot, tokens: list[int], whole: bool) -> int:
        """Prompt tokens `slot` would not have to read again: whole aligned chunks, or, with
        `whole` (see `_whole_start`), the whole shared start, whose cells differ from a cold
        read only by rounding, as a batched step's do."""
        if tokens == slot.prompt and slot.kv >= len(tokens) - 1:
            return len(tokens) - 1
        common = min(_common_prefix(slot.prompt, tokens), len(tokens) - 1, slot.kv)
        if whole:
            return common
        # Where a cold read of `tokens` ends a chunk: the shared start up to there was read in
        # the same pieces, since the pieces follow from the tokens alone.
        last_turn = max(self._turn_ends(tokens[:common]), default=0)
        return max(common // self.chunk * self.chunk, last_turn)

    def _turn_ends(self, tokens: list[int]) -> list[int]:
        """Positions just after an end-of-turn token: a chat's system prompt and earlier turns
        end there, and prompts are read in pieces that end there too, so that another chat
        with the same start can reuse them exactly."""
        return [i + 1 for i, token in enumerate(tokens) if self.engine.is_eog(token)]

    def _start(
        self, slot: Slot, request: Request, *, branch: int = 0, beside: bool = False
    ) -> None:
        tokens = request.tokens
        keep = self._reusable(slot, tokens, _whole_start(request, beside))
        moved = self._move_tail(slot, tokens, keep) if self.shift else None
        if moved is None:
            self.engine.forget(slot.seq, keep)
        slot.kv = slot.position = slot.cached = keep
        slot.prompt = tokens[:keep]
        slot.skip = None
        if moved is not None:
            end, resume = moved
            slot.cached += resume - end
            if keep < end:
                slot.skip = (keep, end, resume)
            else:  # nothing new in between: only the last token is left to read
                slot.position = slot.kv = resume
                slot.prompt = tokens[:resume]
        slot.request, slot.answer, slot.feed, slot.lookup = request, None, None, None
        slot.session = request.params.session or slot.session
        slot.background = request.params.background
        if branch == 0:
            self.stats.reused += keep
            self.stats.slot_hits += keep > 0
        slot.branch = branch

    def _move_tail(self, slot: Slot, tokens: list[int], keep: int) -> tuple[int, int] | None:
        """Keep the cells of the end the new prompt shares with the slot's last one, moved to
        their new positions (llama.cpp's cache reuse by KV shifting), so that an edit in the
        middle (a keystroke before a long suffix) reads only what changed: what is new goes
        through the scratch sequence, which sees the shared start but not the moved end, and
        is lent back. The moved cells were computed before the edit, so the answer may differ
        from a cold one. Returns (where the moved end starts, where reading resumes)."""
        old, last = slot.prompt, len(tokens) - 1
        n = _shared_end(old, tokens, keep)
        if n - 1 < self.shift:  # the last token is read again, for its logits
            return None
        old_start, new_start = len(old) - n, len(tokens) - n
        if keep < new_start:
            if self._scratch is not None:
                return None
            self._scratch = slot
            self.engine.forget(self.engine.scratch)
            self.engine.lend(slot.seq, self.engine.scratch, 0, keep)
        self.engine.forget(slot.seq, keep, old_start)
        self.engine.forget(slot.seq, len(old) - 1)
        self.engine.shift(slot.seq, old_start, len(old) - 1, new_start - old_start)
        self.stats.shifted += n - 1
        return new_start, last

    def _free_scratch(self, slot: Slot) -> None:
        if self._scratch is slot:
            self.engine.forget(self.engine.scratch)
            self._scratch = None
        slot.skip = None

    def _plan(self) -> list[tuple[Slot, Piece]]:
        """This step's pieces: a token of each answer (with its draft), then prompt chunks by
        urgency."""
        planned: list[tuple[Slot, Piece]] = []
        running = self._running()
        room = self.engine.batch_size - sum(s.feed is not None for s in running)
        for slot in running:
            if slot.feed is not None:
                slot.draft = self._draft(slot, room)
                room -= len(slot.draft)
                tokens = [slot.feed, *slot.draft]
                planned.append((slot, Piece(slot.seq, slot.kv, tokens, len(tokens))))
        if planned:
            room = min(room, self.chunk)
        now = time.monotonic()
        reading = [s for s in running if s.answer is None]
        reading.sort(key=lambda s: s.request.urgency(now, self.aging))  # type: ignore[union-attr]
        # A prompt read beside other sequences cannot be exact anyway (the step's shape sets
        # the rounding), so it is read in as few steps as the room allows.
        shared = bool(planned) or len(reading) > 1
        for slot in reading:
            piece = self._next_piece(slot, room if shared else 0)
            if not piece or len(piece) > room:
                break
            seq = self.engine.scratch if slot.skip is not None else slot.seq
            planned.append((slot, Piece(seq, slot.position, piece)))
            room -= len(piece)
        return planned

    def _running(self) -> list[Slot]:
        """The slots that take part in this step: all busy ones, or, while any interactive
        request is busy, only the interactive ones (background work pauses)."""
        busy = [s for s in self.slots if s.request is not None]
        interactive = [s for s in busy if not s.request.params.background]  # type: ignore[union-attr]
        return interactive or busy

    def _draft(self, slot: Slot, room: int) -> list[int]:
        """Guesses at the tokens after `slot.feed`, if its request asked for drafts."""
        answer, lookup = slot.answer, slot.lookup
        if lookup is None or answer is None:
            return []
        # Guesses past the answer's budget would never be taken.
        return lookup.draft(min(room, answer.budget - len(answer.tokens) - 1))

    def _next_piece(self, slot: Slot, room: int = 0) -> list[int]:
        """The next aligned chunk of the slot's prompt, or its last token alone; given the
        `room` of a step shared with others, as much of the prompt as fits."""
        tokens = slot.request.tokens  # type: ignore[union-attr]
        last, position = len(tokens) - 1, slot.position
        if room:
            end = slot.skip[1] if slot.skip is not None else len(tokens)
            return tokens[position : min(end, position + room)]
        if position < last:
            end = min((position // self.chunk + 1) * self.chunk, last)
            end = next((i + 1 for i in range(position, end) if self.engine.is_eog(tokens[i])), end)
            if slot.skip is not None:
                end = min(end, slot.skip[1])
            return tokens[position:end]
        return tokens[last:]

    def _advance(self, slot: Slot, size: int, index: int) -> None:
        """Take the step's outcome for `slot`: a prompt piece read, or a token decoded."""
        request = slot.request
        assert request is not None
        if slot.answer is None:
            slot.position += size
            if slot.skip is not None:
                start, end, resume = slot.skip
                if slot.position < end:
                    return
                self.engine.lend(self.engine.scratch, slot.seq, start, end)
                self._free_scratch(slot)
                slot.position = resume
            slot.kv = slot.position
            slot.prompt = request.tokens[: slot.position]
            if slot.position < len(request.tokens):
                return
            slot.answer = self._answer(request, slot.branch, slot.cached)
            if slot.answer.budget <= 0:
                slot.answer.end("length")
                self._finish(slot)
                return
            if request.params.draft > 0:
                slot.lookup = Lookup(request.tokens, request.params.draft)
            self._take(slot, index)
            return
        # The answer's last token and its draft were read: keep the guesses the model agrees
        # with, and drop the cells of the rest.
        draft, slot.draft = slot.draft, []
        slot.kv += 1
        first = index - len(draft)
        for offset, guess in enumerate(draft):
            token = self._take(slot, first + offset)
            if token != guess:
                if token is not None:
                    self.engine.forget(slot.seq, slot.kv)
                self.stats.accepted += offset
                return
            slot.kv += 1
        self.stats.accepted += len(draft)
        self._take(slot, index)

    def _take(self, slot: Slot, index: int) -> int | None:
        """Sample the answer's next token from the step's `index`-th logits; finish the answer
        if that ends it."""
        answer = slot.answer
        assert answer is not None
        sampled = len(answer.tokens)
        slot.feed = answer.take(index)
        self.stats.decoded += len(answer.tokens) > sampled
        if slot.feed is None:
            self._finish(slot)
        elif slot.lookup is not None:
            slot.lookup.extend([slot.feed])
        return slot.feed

    def _answer(self, request: Request, branch: int, cached: int) -> Answer:
        params = request.params
        ranked = params.n > 1 and params.temperature == 0
        return Answer(
            self.engine,
            params,
            request.stop,
            prompt_tokens=len(request.tokens),
            cached_tokens=cached,
            arrived=request.arrived,
            seed=request.seed + branch,
            first_rank=branch if ranked else None,
            on_delta=request.on_delta,
        )

    def _finish(self, slot: Slot) -> None:
        """An answer is complete: start the request's next one, or hand all of them back."""
        request, answer = slot.request, slot.answer
        assert request is not None and answer is not None
        request.choices.append(answer.choice())
        self.decode_rate = answer.decode_rate or self.decode_rate
        if len(request.choices) < request.params.n:
            self._start(slot, request, branch=len(request.choices))
            return
        self._release(slot)
        self._answered.append(functools.partial(request.on_done, request.choices, self.decode_rate))

    def _fail(self, slot: Slot, message: str) -> None:
        request = slot.request
        self.engine.forget(slot.seq)
        slot.prompt, slot.kv = [], 0
        if slot.answer is not None:
            slot.answer.end("cancelled")
        self._release(slot)
        if request is not None:
            request.on_error(message)

    def _release(self, slot: Slot) -> None:
        self._free_scratch(slot)
        slot.request, slot.answer, slot.feed, slot.lookup = None, None, None, None
        slot.draft = []
        slot.used = time.monotonic()

    def _count(self, planned: list[tuple[Slot, Piece]]) -> None:
        stats = self.stats
        size = sum(len(piece.tokens) for _, piece in planned)
        fed = sum(len(piece.tokens) for slot, piece in planned if slot.answer is not None)
        stats.steps += 1
        stats.step_tokens += size
        stats.prefilled += size - fed
        stats.drafted += sum(len(slot.draft) for slot, _ in planned)
        stats.largest_step = max(stats.largest_step, size)

    def _report(self) -> None:
        now = time.monotonic()
        idle = not self._busy()
        if self.on_stats is None or (now - self._stats_sent < STATS_INTERVAL and not idle):
            return
        stats = self.stats
        stats.active = sum(s.request is not None for s in self.slots)
        stats.waiting = len(self._waiting)
        stats.kv_cells = sum(s.kv for s in self.slots)
        self._stats_sent = now
        self.on_stats(stats.snapshot())


def _whole_start(request: Request, beside: bool) -> bool:
    """Whether `request` reuses the whole start its prompt shares with a slot's, not only the
    pieces a cold read would make: when exactness is not on offer anyway (its prompt is read
    beside other sequences, whose step shapes set the rounding) or not worth a wait (a
    completion, priority 0: a keystroke is waiting)."""
    return beside or request.params.priority == 0


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _shared_end(old: list[int], new: list[int], keep: int) -> int:
    """How many tokens `old` and `new` end with alike, after their first `keep`."""
    n, most = 0, min(len(old), len(new) - 1) - keep
    while n < most and old[-1 - n] == new[-1 - n]:
        n += 1
    return n
