"""One answer being decoded: its sampler, its text, its stop strings and the log-probability of
every token it samples.

The logits of the answer's last position are enough to score each sampled token, so answers get
real log-probabilities without `logits_all` (which would compute logits for every prompt token).
The batcher owns the step; an Answer only turns a row of logits into its next token.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable

import numpy as np
from llama_cpp._internals import LlamaSampler

from codey.backends.base import Choice, Delta, FinishReason, SamplingParams, TokenLogprob
from codey.backends.engine import LlamaEngine

OnDelta = Callable[[Delta], None]


class Answer:
    """The decoding of one answer to a prompt of `prompt_tokens` tokens.

    `first_rank` set: the answer opens with the rank-th most likely token that does not end it
    at once, then continues with the sampler (how n > 1 at temperature 0 gives n distinct,
    ranked, deterministic answers).
    """

    def __init__(
        self,
        engine: LlamaEngine,
        params: SamplingParams,
        stop: tuple[str, ...],
        *,
        prompt_tokens: int,
        cached_tokens: int = 0,
        arrived: float | None = None,
        seed: int,
        first_rank: int | None = None,
        on_delta: OnDelta | None = None,
    ) -> None:
        self.engine = engine
        self.params = params
        self.stop = stop
        self.prompt_tokens = prompt_tokens
        self.cached_tokens = cached_tokens
        self.first_rank = first_rank
        self.on_delta = on_delta
        self.sampler = _sampler(engine, params, seed)
        self.budget = min(params.max_tokens, engine.context_length - prompt_tokens)
        self.text = ""
        self.tokens: list[TokenLogprob] = []
        self.finish: FinishReason | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._sent = 0
        self.started = time.monotonic()
        self.arrived = self.started if arrived is None else arrived
        """When the request reached the engine (time.monotonic)."""
        self.ended = self.started

    @property
    def done(self) -> bool:
        return self.finish is not None

    def take(self, index: int) -> int | None:
        """Sample from the step's `index`-th logits; the token to feed next, or None once the
        answer is finished (end of generation, a stop string, or its budget)."""
        engine = self.engine
        logits = engine.logits(index)
        if not self.tokens and self.first_rank is not None:
            token = _ranked_opening(engine, logits, self.first_rank)
        elif self.params.temperature == 0:
            token = int(np.argmax(logits))  # what the greedy sampler picks, without its copy
        else:
            token = self.sampler.sample(engine.context, index)
        if engine.is_eog(token):
            self.end("stop")
            return None
        piece = self._decoder.decode(engine.piece(token))
        if self.params.logprobs:
            peak = float(logits.max())
            lse = peak + float(np.log(np.exp(logits - peak).sum()))
            scored = TokenLogprob(
                piece, float(logits[token]) - lse, _top(engine, logits, lse, self.params)
            )
        else:  # nobody reads it: spare the pass over the vocabulary
            scored = TokenLogprob(piece, None)
        self.tokens.append(scored)
        self.text += piece
        cut = _find_stop(self.text, self.stop, len(self.text) - len(piece))
        if cut is not None:
            self.text, self.tokens = self.text[:cut], _tokens_within(self.tokens, cut)
            self.end("stop")
            return None
        if self.on_delta:
            ready = len(self.text) - _stop_overlap(self.text, self.stop)
            if ready > self._sent:
                self.on_delta(Delta(self.text[self._sent : ready], self.tokens[-1]))
                self._sent = ready
        if self.params.until is not None and self.params.until(self.text):
            self.end("stop")
            return None
        if len(self.tokens) >= self.budget:
            self.end("length")
            return None
        return token

    def end(self, finish: FinishReason) -> None:
        """Finish the answer (once): free its sampler and send what is left of its text."""
        if self.finish is not None:
            return None
        self.finish = finish
        self.ended = time.monotonic()
        self.sampler.close()
        if self.on_delta:
            self.on_delta(
                Delta(
                    self.text[self._sent :],
                    None,
                    finish,
                    prompt_tokens=self.prompt_tokens,
                    completion_tokens=len(self.tokens),
                    cached_tokens=self.cached_tokens,
                )
            )

    def choice(self) -> Choice:
        return Choice(
            self.text,
            self.tokens,
            self.finish or "cancelled",
            self.cached_tokens,
            prompt_seconds=self.started - self.arrived,
            decode_seconds=self.ended - self.started,
        )

    @property
    def decode_rate(self) -> float:
        """Tokens per second since the answer's first token was asked for."""
        elapsed = time.monotonic() - self.started
        return len(self.tokens) / elapsed if len(self.tokens) > 1 and elapsed > 0 else 0.0


def _sampler(engine: LlamaEngine, params: SamplingParams, seed: int) -> LlamaSampler:
    sampler = LlamaSampler()
    if params.temperature == 0:
        sampler.add_greedy()
        return sampler
    sampler.add_top_k(params.top_k if params.top_k > 0 else engine.n_vocab)
    sampler.add_top_p(params.top_p, 1)
    sampler.add_temp(params.temperature)
    sampler.add_dist(seed)
    return sampler


def _ranked_opening(engine: LlamaEngine, logits: np.ndarray, rank: int) -> int:
    """The rank-th most likely token that does not end the answer at once."""
    order = np.argpartition(-logits, rank + 16)[: rank + 16]
    order = order[np.argsort(-logits[order])]
    candidates = [int(t) for t in order if not engine.is_eog(int(t))]
    return candidates[min(rank, len(candidates) - 1)]


def _top(
    engine: LlamaEngine, logits: np.ndarray, lse: float, params: SamplingParams
) -> tuple[tuple[str, float], ...]:
    k = params.top_logprobs
    if k <= 0:
        return ()
    order = np.argpartition(-logits, k)[:k]
    order = order[np.argsort(-logits[order])]
    return tuple((engine.token_text(int(t)), float(logits[t] - lse)) for t in order)


def _find_stop(text: str, stop: tuple[str, ...], new_from: int) -> int | None:
    """Index of the earliest stop string that ends inside the newly added text."""
    hits = [i for s in stop if s and (i := text.find(s, max(0, new_from - len(s) + 1))) != -1]
    return min(hits) if hits else None


def _stop_overlap(text: str, stop: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that could still grow into a stop string."""
    longest = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), longest, -1):
            if s.startswith(text[-k:]):
                longest = k
                break
    return longest


def _tokens_within(tokens: list[TokenLogprob], length: int) -> list[TokenLogprob]:
    """The tokens whose text starts before `length` characters."""
    kept, offset = [], 0
    for token in tokens:
        if offset >= length:
            break
        kept.append(token)
        offset += len(token.text)
    return kept
