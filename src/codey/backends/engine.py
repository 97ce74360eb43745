"""The embedded llama.cpp model and the decode loop that scores every token it samples.

Runs in the engine process (engine_worker.py), never in the server. Not thread-safe: only the
scheduler's thread may call `run`. The loop is our own rather than `Llama.generate`, because
the last row of logits (all that `logits_all=False` computes) is enough to give each sampled
token its real log-probability at no extra prompt cost.
"""

from __future__ import annotations

import codecs
import ctypes
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import llama_cpp
import llama_cpp._logger
import llama_cpp.llama
import numpy as np
from llama_cpp._internals import LlamaSampler

from codey.backends.base import Choice, Delta, FinishReason, SamplingParams, TokenLogprob
from codey.errors import BackendError

OnDelta = Callable[[Delta], None]
PREFILL_CHUNK = 128
"""Prompt evaluation step; whole aligned chunks are what the KV cache reuses."""


_BUFFER_LINE = re.compile(r"(\S+) model buffer size")


class LlamaEngine:
    """One llama.cpp model in this process, reusing its KV cache across calls.

    `extra_buffers` lets llama.cpp repack the weights into its extra buffer types (CPU_REPACK,
    and AMX when the build has it); `buffer_types` says where the weights went.
    """

    def __init__(
        self,
        path: Path,
        *,
        context_length: int,
        threads: int,
        batch_size: int,
        extra_buffers: bool = True,
    ) -> None:
        try:
            with _load_log() as lines, _model_params(use_extra_bufts=extra_buffers):
                self.llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=context_length,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_batch=batch_size,
                    logits_all=False,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp could not load {path}: {exc}") from exc
        self.buffer_types = sorted(
            {m.group(1) for line in lines if (m := _BUFFER_LINE.search(line))}
        )
        """Buffer types that hold the weights, as llama.cpp logged them: CPU_Mapped, CPU_REPACK,
        AMX, ..."""
        self.threads = threads
        self.n_vocab = self.llm.n_vocab()
        self.context_length = self.llm.n_ctx()
        self.metadata: dict[str, str] = dict(self.llm.metadata)
        self._vocab = self.llm._model.vocab
        self._chunk = min(PREFILL_CHUNK, batch_size)
        self.decode_rate = 0.0
        """Tokens per second of the last answer's decoding (prompt evaluation excluded)."""
        self._last_prompt: list[int] = []

    def reset(self) -> None:
        """Forget the KV cache, so that the next prompt is evaluated in full."""
        self.llm.reset()
        self._last_prompt = []

    def tokenize(self, text: str, *, special: bool, add_bos: bool = False) -> list[int]:
        """Token ids of `text`; `special` lets sentinels such as <|im_start|> be one token."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def token_text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def run(
        self,
        tokens: Sequence[int],
        params: SamplingParams,
        stop: Sequence[str],
        cancel: threading.Event,
        on_delta: OnDelta | None = None,
    ) -> list[Choice]:
        """`params.n` answers to the prompt `tokens`.

        At temperature 0 with n > 1 the i-th answer opens with the i-th most likely first token
        and continues greedily: n distinct, deterministic answers. Otherwise each is sampled.
        """
        branch = params.n > 1 and params.temperature == 0
        base_seed = params.seed if params.seed is not None else random.randrange(2**31)
        choices: list[Choice] = []
        for i in range(params.n):
            if cancel.is_set():
                break
            choices.append(
                self._decode(
                    tokens,
                    params,
                    tuple(stop),
                    cancel,
                    on_delta,
                    first_rank=i if branch else None,
                    seed=base_seed + i,
                )
            )
        return choices

    def _prefill(self, tokens: Sequence[int]) -> None:
        """Evaluate the prompt, reusing what the KV cache holds only where that is exact.

        llama.cpp's kernels round differently for batches of different shapes, so the same
        prompt evaluated in other pieces gives other logits, and another confidence. Prompts
        are therefore always evaluated in chunks aligned to multiples of PREFILL_CHUNK, then
        the last token alone; only whole aligned chunks are reused (or the whole prompt, when it
        is the same as the last one). Each prompt thus gets the same logits whatever came before.
        """
        llm, chunk = self.llm, self._chunk
        last = len(tokens) - 1
        if list(tokens) == self._last_prompt and llm.n_tokens >= last:
            keep = last
        else:
            common = 0
            for a, b in zip(self._last_prompt, tokens, strict=False):
                if a != b:
                    break
                common += 1
            keep = min(common, last, llm.n_tokens) // chunk * chunk
        llm.n_tokens = keep
        self._last_prompt = []  # until this prefill completes, nothing in the cache is trusted
        position = keep
        while position < last:
            end = min((position // chunk + 1) * chunk, last)
            llm.eval(list(tokens[position:end]))
            position = end
        llm.eval(list(tokens[last:]))
        self._last_prompt = list(tokens)

    def _logits(self) -> np.ndarray:
        ptr = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _sampler(self, params: SamplingParams, seed: int) -> LlamaSampler:
        sampler = LlamaSampler()
        if params.temperature == 0:
            sampler.add_greedy()
            return sampler
        sampler.add_top_k(params.top_k if params.top_k > 0 else self.n_vocab)
        sampler.add_top_p(params.top_p, 1)
        sampler.add_temp(params.temperature)
        sampler.add_dist(seed)
        return sampler

    def _ranked_opening(self, logits: np.ndarray, rank: int) -> int:
        """The rank-th most likely token that does not end the answer at once."""
        order = np.argpartition(-logits, rank + 16)[: rank + 16]
        order = order[np.argsort(-logits[order])]
        candidates = [int(t) for t in order if not self.is_eog(int(t))]
        return candidates[min(rank, len(candidates) - 1)]

    def _top(self, logits: np.ndarray, lse: float, k: int) -> tuple[tuple[str, float], ...]:
        if k <= 0:
            return ()
        order = np.argpartition(-logits, k)[:k]
        order = order[np.argsort(-logits[order])]
        return tuple((self.token_text(int(t)), float(logits[t] - lse)) for t in order)

    def _decode(
        self,
        prompt: Sequence[int],
        params: SamplingParams,
        stop: tuple[str, ...],
        cancel: threading.Event,
        on_delta: OnDelta | None,
        *,
        first_rank: int | None,
        seed: int,
    ) -> Choice:
        self._prefill(prompt)
        sampler = self._sampler(params, seed)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        budget = min(params.max_tokens, self.context_length - len(prompt))
        text, sent = "", 0
        tokens: list[TokenLogprob] = []
        finish: FinishReason = "length"
        started = time.perf_counter()
        try:
            for step in range(budget):
                if cancel.is_set():
                    finish = "cancelled"
                    break
                logits = self._logits()
                if step == 0 and first_rank is not None:
                    token = self._ranked_opening(logits, first_rank)
                else:
                    token = sampler.sample(self.llm._ctx, -1)
                if self.is_eog(token):
                    finish = "stop"
                    break
                peak = float(logits.max())
                lse = peak + float(np.log(np.exp(logits - peak).sum()))
                piece = decoder.decode(self.llm.detokenize([token]))
                tokens.append(
                    TokenLogprob(
                        piece,
                        float(logits[token]) - lse,
                        self._top(logits, lse, params.top_logprobs),
                    )
                )
                text += piece
                cut = _find_stop(text, stop, len(text) - len(piece))
                if cut is not None:
                    text, tokens = text[:cut], _tokens_within(tokens, cut)
                    finish = "stop"
                    break
                if on_delta:
                    ready = len(text) - _stop_overlap(text, stop)
                    if ready > sent:
                        on_delta(Delta(text[sent:ready], tokens[-1]))
                        sent = ready
                self.llm.eval([token])
        finally:
            sampler.close()
        elapsed = time.perf_counter() - started
        if len(tokens) > 1 and elapsed > 0:
            self.decode_rate = len(tokens) / elapsed
        if on_delta:
            on_delta(
                Delta(
                    text[sent:],
                    None,
                    finish,
                    prompt_tokens=len(prompt),
                    completion_tokens=len(tokens),
                )
            )
        return Choice(text, tokens, finish)


@contextmanager
def _load_log() -> Iterator[list[str]]:
    """Collect what llama.cpp logs while loading (it names the buffer types only there)."""
    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        llama_cpp.llama_log_set(llama_cpp._logger.llama_log_callback, ctypes.c_void_p(0))


@contextmanager
def _model_params(*, use_extra_bufts: bool) -> Iterator[None]:
    """Make `Llama` load with `use_extra_bufts` set, which its constructor does not expose."""
    module = llama_cpp.llama.llama_cpp
    default = module.llama_model_default_params

    def params() -> llama_cpp.llama_model_params:
        p = default()
        p.use_extra_bufts = use_extra_bufts
        return p

    module.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_model_default_params = default


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
