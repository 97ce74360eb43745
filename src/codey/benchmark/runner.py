"""Run a workload against a server over HTTP or the services in-process, then the same prompts
on the bare engine, and summarise both."""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import httpx
import llama_cpp

from codey.backends.base import ChatPrompt, Message, SamplingParams
from codey.backends.engine_process import EngineSpec
from codey.backends.fim import FIM_TEMPLATES
from codey.benchmark import concurrency
from codey.benchmark.workload import Job
from codey.config import Service
from codey.errors import ConfigError
from codey.runtime import Runtime
from codey.services.chat import ChatRequest, system_prompt
from codey.services.completion import CompletionRequest
from codey.services.generation import GenerationRequest, build_messages

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Sample:
    service: str
    seconds: float
    completion_tokens: int
    ok: bool


async def _gather(
    jobs: list[Job], concurrency: int, one: Callable[[Job], Awaitable[Sample]], progress: Progress
) -> tuple[list[Sample], float]:
    gate = asyncio.Semaphore(concurrency)

    async def guarded(job: Job) -> Sample:
        async with gate:
            sample = await one(job)
            progress(1)
            return sample

    started = time.perf_counter()
    samples = await asyncio.gather(*(guarded(job) for job in jobs))
    return list(samples), time.perf_counter() - started


async def over_http(
    url: str, key: str | None, jobs: list[Job], concurrency: int, progress: Progress
) -> tuple[list[Sample], float]:
    headers = {"cache-control": "no-cache, no-store"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits) as c:

        async def one(job: Job) -> Sample:
            started = time.perf_counter()
            response = await c.post(job.path, json=job.body)
            seconds = time.perf_counter() - started
            if response.status_code != 200:
                return Sample(job.service, seconds, 0, False)
            return Sample(
                job.service, seconds, response.json()["usage_stats"]["completion_tokens"], True
            )

        return await _gather(jobs, concurrency, one, progress)


async def in_process(
    runtime: Runtime, jobs: list[Job], concurrency: int, progress: Progress
) -> tuple[list[Sample], float]:
    async def one(job: Job) -> Sample:
        b = job.body
        started = time.perf_counter()
        if job.service == "generation":
            r: Any = await runtime.generation.generate(
                GenerationRequest(b["prompt"], max_tokens=b["max_tokens"], temperature=0)
            )
        elif job.service == "chat":
            r = await runtime.chat.chat(
                ChatRequest(b["message"], max_tokens=b["max_tokens"], temperature=0)
            )
        else:
            r = await runtime.completion.complete(
                CompletionRequest(
                    b["prefix"], b["suffix"], max_completions=1, max_tokens=b["max_tokens"]
                )
            )
        return Sample(job.service, time.perf_counter() - started, r.completion_tokens, True)

    return await _gather(jobs, concurrency, one, progress)


def bare_llama(spec: EngineSpec) -> Any:
    """The model loaded by llama-cpp-python in this process, as codey's engine loads it."""
    return llama_cpp.Llama(
        model_path=spec.path,
        n_ctx=spec.context_length,
        n_threads=spec.threads,
        n_threads_batch=spec.threads,
        n_batch=spec.batch_size,
        verbose=False,
    )


_bare: Any = None
"""The bare engine's `Llama`, in the process that runs it."""


def _load_bare(spec: EngineSpec) -> None:
    global _bare
    _bare = bare_llama(spec)


def _run_bare(service: str, body: dict[str, Any]) -> tuple[int, float]:
    """One job on the bare engine, cold: (completion tokens, seconds)."""
    n = body["max_tokens"]
    _bare.reset()
    started = time.perf_counter()
    if service == "completion":
        prompt = FIM_TEMPLATES["qwen"].render(body["prefix"], body["suffix"])
        tokens = _bare.tokenize(prompt.encode(), add_bos=False, special=True)
        out = _bare.create_completion(tokens, max_tokens=n, temperature=0)
    else:
        if service == "generation":
            turns = build_messages(GenerationRequest(body["prompt"]))
        else:
            turns = [_system(), _user(body["message"])]
        messages = [{"role": m.role, "content": m.content} for m in turns]
        out = _bare.create_chat_completion(messages, max_tokens=n, temperature=0)
    return out["usage"]["completion_tokens"], time.perf_counter() - started


async def bare_engine(runtime: Runtime, jobs: list[Job], progress: Progress) -> list[Sample]:
    """The same prompts straight into llama-cpp-python, one at a time, timed inside a process
    of its own, as codey's engine runs: nothing else there competes for its interpreter."""
    specs = {}
    for service in {job.service for job in jobs}:
        engine = runtime.engine_for(cast(Service, service))
        if engine is None:
            raise ConfigError(
                f"The bare-engine comparison needs {service} on an embedded model.",
                hint="Route every service to a llamacpp deployment, or run codey bench without it.",
            )
        specs[service] = engine.engine.spec
    loop = asyncio.get_running_loop()
    spawn = multiprocessing.get_context("spawn")
    samples = []
    # a bare engine per model, loaded as the engine its services run on is
    for spec in set(specs.values()):
        pool = ProcessPoolExecutor(1, mp_context=spawn, initializer=_load_bare, initargs=(spec,))
        with pool:
            for job in [j for j in jobs if specs[j.service] == spec]:
                tokens, seconds = await loop.run_in_executor(pool, _run_bare, job.service, job.body)
                samples.append(Sample(job.service, seconds, tokens, True))
                progress(1)
    return samples


async def concurrent_chats(
    runtime: Runtime,
    url: str | None,
    key: str | None,
    levels: list[int],
    max_tokens: int,
    progress: Progress,
) -> list[dict[str, Any]]:
    """Aggregate tokens/s of 1, 4, 8, ... concurrent greedy chats, over HTTP (the OpenAI
    dialect) or on the embedded backend in-process, beside the bare engine batched."""
    prompts = concurrency.chat_prompts(sum(levels))
    embedded = runtime.engine_for("chat")
    bare = None
    if embedded is not None:
        spec = embedded.engine.spec
        rendered = [embedded.render(ChatPrompt(concurrency.chat_messages(p)))[0] for p in prompts]

        def bare(n: int) -> float:
            return concurrency.bare_batched(spec, rendered[:n], max_tokens)

    if url is None:
        if embedded is None:
            raise ConfigError("In-process concurrent chats need the embedded model.")
        greedy = SamplingParams(max_tokens=max_tokens, temperature=0)

        async def local(i: int) -> int:
            prompt = ChatPrompt(concurrency.chat_messages(prompts[i]))
            return (await embedded.generate(prompt, greedy)).completion_tokens

        return await concurrency.sweep(local, levels, bare, progress)
    headers = {"cache-control": "no-cache, no-store"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=900) as client:

        async def remote(i: int) -> int:
            body = concurrency.chat_body(prompts[i], max_tokens)
            response = await client.post("/v1/chat/completions", json=body)
            response.raise_for_status()
            return int(response.json()["usage"]["completion_tokens"])

        return await concurrency.sweep(remote, levels, bare, progress)


def _system() -> Message:
    return Message("system", system_prompt(None, None))


def _user(text: str) -> Message:
    return Message("user", text)


def summarise(samples: list[Sample], wall: float, bare: list[Sample]) -> dict[str, Any]:
    by_service: dict[str, Any] = {}
    for service in sorted({s.service for s in samples}):
        ok = [s for s in samples if s.service == service and s.ok]
        base = [s for s in bare if s.service == service]
        seconds = sorted(s.seconds for s in ok)
        tps = sum(s.completion_tokens for s in ok) / sum(seconds) if seconds else 0.0
        bare_tps = (
            sum(s.completion_tokens for s in base) / sum(s.seconds for s in base) if base else 0.0
        )
        by_service[service] = {
            "requests": len([s for s in samples if s.service == service]),
            "errors": len([s for s in samples if s.service == service and not s.ok]),
            "min_s": round(seconds[0], 3) if seconds else None,
            "median_s": round(statistics.median(seconds), 3) if seconds else None,
            "p95_s": round(seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))], 3)
            if seconds
            else None,
            "max_s": round(seconds[-1], 3) if seconds else None,
            "requests_per_s": round(len(ok) / wall, 3) if wall else 0.0,
            "tokens_per_s": round(tps, 1),
            "bare_tokens_per_s": round(bare_tps, 1),
            "ratio_to_bare": round(tps / bare_tps, 3) if bare_tps else None,
        }
    return by_service
