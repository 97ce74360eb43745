"""The embedded llama.cpp model: one context whose KV cache holds several sequences, and one
`llama_decode` per step over tokens of any of them.

Runs in the engine process (engine_worker.py), never in the server; only the batcher's thread
calls it. Each sequence has a stream of cells of its own, as in llama.cpp's server: its
attention reads only its own cells, never what other clients left in the cache. llama.cpp
steps sequences with consecutive ids together and the others in further passes, so the
batcher keeps the busy ones together. With `shared_pool`, the sequences share one pool of
cells instead (`kv_unified`), where a sequence's cells can be lent to another without
copying, which is how a keystroke before the cursor is read without reading the code after
it again; but every token's attention then scans every sequence's cells, about twice the
time (docs/benchmarks.md, "One stream per slot").
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import llama_cpp
import llama_cpp._logger
import numpy as np
from llama_cpp._internals import LlamaContext, LlamaModel

from codey.errors import BackendError

_BUFFER_LINE = re.compile(r"(\S+) model buffer size")


class Piece(NamedTuple):
    """Tokens of one sequence for a step, from position `start` on; the last `outputs` of them
    get logits."""

    seq: int
    start: int
    tokens: Sequence[int]
    outputs: int = 1


class CpuTurn:
    """Engines in different processes (one per model) take turns for their steps: llama.cpp's
    threads wait for each other at every layer, so two engines stepping at once on the same
    cores slow each other far more than twice (docs/benchmarks.md, "Two models")."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


class LlamaEngine:
    """One llama.cpp model in this process with `slots` sequences of `context_length` each.

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
        slots: int = 1,
        extra_buffers: bool = True,
        shared_pool: bool = False,
        turn: Path | None = None,
    ) -> None:
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = 0
        model_params.use_extra_bufts = extra_buffers
        context = llama_cpp.llama_context_default_params()
        # A shared pool has a scratch sequence too (`self.scratch`).
        context.n_seq_max = slots + 1 if shared_pool else slots
        context.n_ctx = context_length * context.n_seq_max
        context.kv_unified = shared_pool
        context.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        context.n_batch = context.n_ubatch = batch_size
        context.n_threads = context.n_threads_batch = threads
        context.no_perf = True
        llama_cpp._logger.set_verbose(False)  # llama.cpp's own log: errors only
        try:
            with _load_log() as lines:
                self.model = LlamaModel(path_model=str(path), params=model_params, verbose=False)
                self.context = LlamaContext(model=self.model, params=context, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp could not load {path}: {exc}") from exc
        self.buffer_types = sorted(
            {m.group(1) for line in lines if (m := _BUFFER_LINE.search(line))}
        )
        """Buffer types that hold the weights, as llama.cpp logged them: CPU_Mapped, CPU_REPACK,
        AMX, ..."""
        self.threads = threads
        self.slots = slots
        self.shared_pool = shared_pool
        self.scratch = slots
        """A sequence id of no slot's, for reading tokens in front of cells a slot keeps (in a
        shared pool only)."""
        self.batch_size = batch_size
        self.n_vocab = self.model.n_vocab()
        self.context_length = context_length
        """Tokens each sequence can hold: prompt plus answer."""
        self.metadata: dict[str, str] = self.model.metadata()
        self._vocab = self.model.vocab
        self._eog: dict[int, bool] = {}
        self._memory = llama_cpp.llama_get_memory(self.context.ctx)
        self._batch = llama_cpp.llama_batch_init(batch_size, 0, 1)
        self._turn = CpuTurn(turn) if turn else None
        """Taken for each step when other engines share this machine's cores (a lock file)."""

    def close(self) -> None:
        if self._turn is not None:
            self._turn.close()
        llama_cpp.llama_batch_free(self._batch)
        self.context.close()
        self.model.close()

    # -- text ----------------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool, add_bos: bool = False) -> list[int]:
        """Token ids of `text`; `special` lets sentinels such as <|im_start|> be one token."""
        return list(self.model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def piece(self, token: int) -> bytes:
        """The bytes a generated token adds to the answer (special tokens add none)."""
        return bytes(self.model.detokenize([token], special=False))

    def token_text(self, token: int) -> str:
        return bytes(self.model.detokenize([token], special=True)).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        eog = self._eog.get(token)
        if eog is None:  # asked of every prompt token, hence remembered
            eog = self._eog[token] = bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))
        return eog

    # -- the KV cache --------------------------------------------------------------------------

    def forget(self, seq: int, keep: int = 0, end: int = -1) -> None:
        """Drop sequence `seq`'s cells from position `keep` on (up to `end`, exclusive)."""
        llama_cpp.llama_memory_seq_rm(self._memory, seq, keep, end)

    def shift(self, seq: int, start: int, end: int, delta: int) -> None:
        """Move sequence `seq`'s cells in [start, end) by `delta` positions (llama.cpp rotates
        their keys before the next step)."""
        llama_cpp.llama_memory_seq_add(self._memory, seq, start, end, delta)

    def lend(self, source: int, target: int, start: int, end: int) -> None:
        """Let sequence `target` see `source`'s cells in [start, end) too (no copy)."""
        llama_cpp.llama_memory_seq_cp(self._memory, source, target, start, end)

    def reset(self) -> None:
        """Forget every sequence."""
        llama_cpp.llama_memory_clear(self._memory, True)

    # -- decoding ------------------------------------------------------------------------------

    def decode(self, pieces: Sequence[Piece]) -> list[int]:
        """Evaluate `pieces` in one step; returns, in order, the step index of each piece's last
        token (its logits rows are that index and the `outputs - 1` before it)."""
        batch, n = self._batch, 0
        ends = [0] * len(pieces)
        # In sequence order: llama.cpp takes a stream into a pass only after the one before it.
        for i in sorted(range(len(pieces)), key=lambda i: pieces[i].seq):
            seq, start, tokens, outputs = pieces[i]
            first_output = len(tokens) - outputs
            for offset, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = start + offset
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = offset >= first_output
                n += 1
            ends[i] = n - 1
        batch.n_tokens = n
        if self._turn is None:
            code = llama_cpp.llama_decode(self.context.ctx, batch)
        else:
            with self._turn():
                code = llama_cpp.llama_decode(self.context.ctx, batch)
        if code != 0:
            raise BackendError(f"llama_decode returned {code} for a step of {n} tokens")
        return ends

    def logits(self, i: int) -> np.ndarray:
        """The logits of the step's `i`-th token, a view valid until the next step."""
        ptr = llama_cpp.llama_get_logits_ith(self.context.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))


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
