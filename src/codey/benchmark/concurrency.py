"""Aggregate tokens/s at several concurrent streams: codey against the bare engine decoding the
same number of sequences in lockstep, in the same run."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from codey.backends.base import Message
from codey.backends.engine_process import EngineSpec
from codey.services.chat import system_prompt

TOPICS = (
    "an LRU cache class with get, put and eviction, and its unit tests",
    "a tokenizer for arithmetic expressions and a recursive-descent parser for them",
    "a thread-safe rate limiter with a token bucket, and an example of its use",
    "a command-line tool that counts lines of code per language in a folder",
    "a binary search tree with insert, delete and in-order traversal",
    "a JSON schema validator for objects, arrays, strings and numbers",
    "a retry decorator with exponential backoff and jitter, and its tests",
    "a small event bus with subscribe, unsubscribe and publish",
)


def chat_prompts(n: int) -> list[str]:
    """`n` distinct requests that each call for a long answer. Each opens with its own number,
    so none shares another's prefix beyond the chat template and a digit or two: with the
    number last, request 110 repeated request 102 up to its last words, and an engine that
    keeps the longest common prefix of any earlier prompt read only those (a prompt cache
    benchmark, not a batching one)."""
    return [f"Request {i}: write in Python {TOPICS[i % len(TOPICS)]}." for i in range(n)]


def chat_messages(prompt: str) -> list[Message]:
    """The turns codey's chat service sends for a first message."""
    return [Message("system", system_prompt(None, None)), Message("user", prompt)]


def chat_body(prompt: str, max_tokens: int) -> dict[str, Any]:
    """The same turns as an OpenAI chat request, greedy."""
    return {
        "model": "codey",
        "messages": [{"role": m.role, "content": m.content} for m in chat_messages(prompt)],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


def bare_batched(spec: EngineSpec, prompts: list[list[int]], max_tokens: int) -> float:
    """Aggregate tokens/s of llama.cpp alone on `len(prompts)` sequences: the prompts read in
    one step, then one `llama_decode` per step carrying the next token of every unfinished
    sequence, greedy; from the first step to the last token, in a process of its own."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return pool.submit(_bare_batched, spec, prompts, max_tokens).result()


def _bare_batched(spec: EngineSpec, prompts: list[list[int]], max_tokens: int) -> float:
    from codey.backends.engine import LlamaEngine, Piece  # the spawned process loads them

    engine = LlamaEngine(
        Path(spec.path),
        context_length=spec.context_length,
        threads=spec.threads,
        batch_size=max(spec.batch_size, sum(map(len, prompts))),
        slots=len(prompts),
        extra_buffers=spec.extra_buffers,
    )
    started = time.perf_counter()
    ends = engine.decode([Piece(seq, 0, tokens) for seq, tokens in enumerate(prompts)])
    live = {
        seq: (len(tokens), index)
        for seq, (tokens, index) in enumerate(zip(prompts, ends, strict=True))
    }
    produced = 0
    for _ in range(max_tokens):
        step = []
        for seq, (position, index) in list(live.items()):
            token = int(np.argmax(engine.logits(index)))
            if engine.is_eog(token):
                del live[seq]
                continue
            produced += 1
            step.append(Piece(seq, position, [token]))
        if not step:
            break
        ends = engine.decode(step)
        live = {p.seq: (p.start + 1, i) for p, i in zip(step, ends, strict=True)}
    seconds = time.perf_counter() - started
    engine.close()
    return produced / seconds


async def aggregate(
    one: Callable[[int], Awaitable[int]], streams: int, rounds: int = 1
) -> tuple[float, int]:
    """(tokens/s, tokens) of `streams` requests at once, `rounds` times: `one(i)` makes the
    i-th request and returns its completion tokens."""
    started = time.perf_counter()
    total = 0
    for r in range(rounds):
        counts = await asyncio.gather(*(one(r * streams + i) for i in range(streams)))
        total += sum(counts)
    return total / (time.perf_counter() - started), total


async def sweep(
    one: Callable[[int], Awaitable[int]],
    streams: list[int],
    bare: Callable[[int], float] | None,
    progress: Callable[[int], None],
) -> list[dict[str, Any]]:
    """At each number of concurrent streams: codey's aggregate tokens/s and, when `bare` is
    given, the bare engine's on the same number of sequences, with their ratio."""
    rows: list[dict[str, Any]] = []
    offset = 0
    for n in streams:

        async def shifted(i: int, offset: int = offset) -> int:
            return await one(offset + i)

        rate, tokens = await aggregate(shifted, n)
        offset += n
        row: dict[str, Any] = {"streams": n, "tokens": tokens, "tokens_per_s": round(rate, 1)}
        if bare is not None:
            base = await asyncio.to_thread(bare, n)
            row["bare_tokens_per_s"] = round(base, 1)
            row["ratio_to_bare"] = round(rate / base, 3) if base else None
        rows.append(row)
        progress(1)
    return rows
