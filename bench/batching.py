"""Many users at once, measured in one run: codey's engine against the bare engine and
llama.cpp's own server on the same GGUF, same machine.

    .venv/bin/python bench/batching.py [--streams 1,4,8] [--tokens 128] [--rounds 3]
                                       [--no-llama-server]

1. Throughput: N concurrent chats of `--tokens` tokens (distinct prompts) through codey's
   OpenAI endpoint, beside the bare engine decoding N sequences in lockstep
   (benchmark/concurrency.py) and llama.cpp's server with N parallel slots; the three take
   turns, `--rounds` times, both servers up at once. For codey, also the time per step and
   the share of the round its engine spent in `llama_decode` (the rest: sampling, scheduling,
   HTTP).
2. Typing: two clients complete in turn in two different 1,500-character windows of real code;
   each keystroke adds one character at the cursor. Time to the suggestion after a keystroke
   against the cold time, codey (`/api/v1/codey/complete`, one suggestion) and llama.cpp's
   server (`/infill`, `cache_prompt`).
3. Completion latency (p50) idle and while 4 long generations run.
4. Alone against batched: how many greedy answers differ when 4 run at once.

codey runs as `codey serve` with its defaults (quotas raised, response cache bypassed), every
service on the 0.5B (`model.available`), the GGUF the other two load; llama.cpp's server with
as many slots as codey, the same context per slot, the same threads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import llama_server  # bench/llama_server.py, beside this script
from rich.console import Console
from rich.table import Table

from codey.backends.base import ChatPrompt
from codey.backends.engine_build import inspect
from codey.backends.engine_process import EngineSpec
from codey.backends.llamacpp import LlamaCppBackend
from codey.backends.vocabulary import Vocabulary
from codey.benchmark.concurrency import (
    aggregate,
    bare_batched,
    chat_body,
    chat_messages,
    chat_prompts,
)
from codey.config import load_settings
from codey.provision.assemble import locate_model
from codey.provision.catalogue import DEFAULT

console = Console(width=120)
NO_CACHE = {"cache-control": "no-cache, no-store"}
WINDOW = 1500
SOURCES = ("httpx/_client.py", "click/core.py", "rich/console.py", "jinja2/environment.py")


# -- servers ---------------------------------------------------------------------------------


@asynccontextmanager
async def codey_server(
    port: int, *, source: Path | None = None, seconds: float = 120, **settings: str
) -> AsyncIterator[str]:
    """`codey serve` on `port` with quotas raised, its own SQLite file and `settings` in its
    environment, until the block ends; from this tree, with every service on the GGUF the
    other engines load, or from the package in `source` (another commit's `src` folder, whose
    settings may predate `model.available`)."""
    tmp = tempfile.mkdtemp(prefix="codey-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEY_")}
    if source is None:
        env["CODEY_MODEL__AVAILABLE"] = json.dumps([DEFAULT.name])
    else:
        env["PYTHONPATH"] = str(source)
    env.update(settings)
    env["CODEY_STORE__SQLITE_PATH"] = f"{tmp}/codey.db"
    for service in ("GENERATION", "CHAT", "COMPLETION"):
        env[f"CODEY_LIMITS__{service}__REQUESTS_PER_DAY"] = "1000000"
        env[f"CODEY_LIMITS__{service}__REQUESTS_PER_MINUTE"] = "100000"
    process = subprocess.Popen(
        [sys.executable, "-m", "codey", "serve", "--port", str(port)],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await until_ready(url, process, seconds=seconds)
        yield url
    finally:
        process.terminate()
        process.wait(30)


async def until_ready(url: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    """Wait until codey at `url` answers /readyz with 200; SystemExit if `process` ends first."""
    async with httpx.AsyncClient() as client:
        for _ in range(int(seconds / 0.2)):
            if process.poll() is not None:
                raise SystemExit(f"codey exited with {process.returncode} before it was ready")
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


def llama_cpp_server(model: Path, slots: int, threads: int) -> AbstractContextManager[str]:
    return llama_server.serve(
        llama_server.build(),
        model,
        port=8390,
        parallel=slots,
        ctx_size=llama_server.SLOT_CONTEXT * slots,
        threads=threads,
    )


# -- workloads -------------------------------------------------------------------------------


async def chats(
    client: httpx.AsyncClient,
    streams: int,
    tokens: int,
    offset: int,
    step_ms: list[float] | None = None,
) -> float:
    """Aggregate tokens/s of `streams` concurrent chats. `step_ms` collects llama.cpp server's
    own time per generated token of each answer (its `timings`), a step of the whole batch."""
    prompts = chat_prompts(offset + streams)[offset:]

    async def one(i: int) -> int:
        r = await client.post("/v1/chat/completions", json=chat_body(prompts[i], tokens))
        r.raise_for_status()
        body = r.json()
        if step_ms is not None and "timings" in body:
            step_ms.append(float(body["timings"]["predicted_per_token_ms"]))
        return int(body["usage"]["completion_tokens"])

    rate, _ = await aggregate(one, streams)
    return rate


async def engine_counters(client: httpx.AsyncClient) -> dict[str, float]:
    """codey's batcher counters (steps, time in llama_decode, ...), as /readyz reports them."""
    return dict((await client.get("/readyz")).json()["engine"]["batching"])


def windows(count: int) -> list[tuple[str, str]]:
    """(prefix, suffix) pairs: a cursor at the end of a line's first word, in real library
    code, with WINDOW characters around it."""
    import importlib.util

    found: list[tuple[str, str]] = []
    for source in SOURCES:
        package, _, rest = source.partition("/")
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.origin is not None
        text = Path(spec.origin).with_name(rest).read_text()
        for line_start in range(len(text) // 3, len(text) - WINDOW, len(text) // 7):
            start = text.index("\n", line_start) + 1
            line = text[start : text.index("\n", start)]
            stripped = line.lstrip()
            if len(stripped) < 12 or stripped.startswith(("#", '"', "'")):
                continue
            cursor = start + len(line) - len(stripped) + len(stripped.split()[0])
            lo = max(0, cursor - 2 * WINDOW // 3)
            found.append((text[lo:cursor], text[cursor : lo + WINDOW]))
            if len(found) == count:
                return found
    return found


Complete = Callable[[str, str], Awaitable[tuple[float, str]]]
"""(seconds, first suggestion) of one completion at a cursor."""


def codey_complete(client: httpx.AsyncClient) -> Complete:
    async def complete(prefix: str, suffix: str) -> tuple[float, str]:
        body = {"prefix": prefix, "suffix": suffix, "max_completions": 1, "max_tokens": 64}
        started = time.perf_counter()
        r = await client.post("/api/v1/codey/complete", json=body)
        r.raise_for_status()
        suggestions = r.json()["suggestions"]
        return time.perf_counter() - started, suggestions[0]["completion"] if suggestions else ""

    return complete


def llama_complete(client: httpx.AsyncClient) -> Complete:
    async def complete(prefix: str, suffix: str) -> tuple[float, str]:
        body = {
            "input_prefix": prefix,
            "input_suffix": suffix,
            "n_predict": 64,
            "cache_prompt": True,
            "temperature": 0,
        }
        started = time.perf_counter()
        r = await client.post("/infill", json=body)
        r.raise_for_status()
        return time.perf_counter() - started, str(r.json()["content"])

    return complete


async def typing(complete: Complete, keystrokes: int = 4) -> dict[str, Any]:
    """Two clients in turn: cold once each, then a character at each one's cursor, in turn."""
    (a_prefix, a_suffix), (b_prefix, b_suffix) = windows(2)
    cold = [await complete(a_prefix, a_suffix), await complete(b_prefix, b_suffix)]
    typed = []
    for k in range(keystrokes):
        letter = "abcdefgh"[k]
        a_prefix, b_prefix = a_prefix + letter, b_prefix + letter
        typed.append(await complete(a_prefix, a_suffix))
        typed.append(await complete(b_prefix, b_suffix))
    cold_s = statistics.median(s for s, _ in cold)
    typed_s = statistics.median(s for s, _ in typed)
    return {
        "cold_s": cold_s,
        "typed_s": typed_s,
        "ratio": typed_s / cold_s,
        "suggestions": [text for _, text in typed],
    }


async def under_load(
    complete: Complete, long: Callable[[int], Coroutine[Any, Any, object]]
) -> dict[str, float]:
    """Completion p50 idle, then while 4 long generations run; each at a cursor of its own."""
    cursors = windows(10)
    idle = [(await complete(p, s))[0] for p, s in cursors[:5]]
    generations = [asyncio.create_task(long(i)) for i in range(4)]
    await asyncio.sleep(3)
    loaded = [(await complete(p, s))[0] for p, s in cursors[5:]]
    for task in generations:
        task.cancel()
    await asyncio.gather(*generations, return_exceptions=True)
    idle_s, loaded_s = statistics.median(idle), statistics.median(loaded)
    return {"idle_s": idle_s, "loaded_s": loaded_s, "ratio": loaded_s / idle_s}


async def alone_vs_batched(client: httpx.AsyncClient, count: int = 16) -> tuple[int, int]:
    """(answers that differ, answers): greedy chats alone, then four at a time."""
    prompts = [f"Explain in two sentences what {t} is for. (#{i})" for i, t in enumerate(
        ["a mutex", "a semaphore", "a future", "a coroutine", "a generator", "a decorator",
         "a context manager", "a metaclass"] * 2
    )]  # fmt: skip

    async def ask(prompt: str) -> str:
        r = await client.post("/v1/chat/completions", json=chat_body(prompt, 64))
        r.raise_for_status()
        return str(r.json()["choices"][0]["message"]["content"])

    alone = [await ask(p) for p in prompts]
    together: list[str] = []
    for i in range(0, count, 4):
        together += await asyncio.gather(*(ask(p) for p in prompts[i : i + 4]))
    return sum(a != b for a, b in zip(alone, together, strict=True)), count


# -- the run ---------------------------------------------------------------------------------


def bare_prompts(path: Path, streams: int) -> list[list[int]]:
    """The chat prompts as codey's engine receives them: rendered by its own template."""
    renderer = LlamaCppBackend(None, Vocabulary(path), "bench")  # type: ignore[arg-type]
    return [renderer.render(ChatPrompt(chat_messages(p)))[0] for p in chat_prompts(streams)]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings()
    m = settings.model
    path = locate_model(m.path, m.sha256, m.cache_dir).path
    spec = EngineSpec.of(path, m)
    streams = [int(s) for s in args.streams.split(",")]
    result: dict[str, Any] = {"streams": streams, "tokens": args.tokens, "slots": m.slots}
    targets: dict[str, Callable[[], Any]] = {"codey": lambda: codey_server(args.port)}
    if args.llama_server:
        targets["llama.cpp server"] = lambda: _async(llama_cpp_server(path, m.slots, m.threads))
    console.print(
        f"throughput: {', '.join(['bare engine', *targets])} in turn, {args.rounds} rounds"
    )
    result["bare"], result["rounds"] = {}, {}
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for name, target in targets.items():
            url = await stack.enter_async_context(target())
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, headers=NO_CACHE, timeout=900)
            )
            await chats(clients[name], 1, 8, 90)  # warm-up: the first request pays one-off costs
        # Decode speed on a shared VM drifts between minutes, so the three take turns, round
        # after round, and each round's ratios compare neighbours in time.
        for n in streams:
            rounds = []
            for r in range(args.rounds):
                offset = 100 * n + 10 * r  # every request of the run a different one
                row = {"bare": bare_batched(spec, bare_prompts(path, n), args.tokens)}
                # The servers swap places every round, so neither always follows the bare
                # engine's process.
                turns = list(clients.items())
                for name, client in turns[::-1] if r % 2 else turns:
                    before = await engine_counters(client) if name == "codey" else {}
                    started = time.perf_counter()
                    server_steps: list[float] = []
                    row[name] = await chats(client, n, args.tokens, offset, server_steps)
                    if server_steps:
                        row["server step ms"] = statistics.median(server_steps)
                    if before:
                        wall = time.perf_counter() - started
                        after = await engine_counters(client)
                        steps = after["steps"] - before["steps"]
                        busy = after["decode_seconds"] - before["decode_seconds"]
                        row["codey decode share"] = busy / wall
                        row["codey step ms"] = 1000 * busy / steps
                rounds.append(row)
            result["rounds"][n] = rounds
            result["bare"][n] = statistics.median(row["bare"] for row in rounds)
            for name in clients:
                chats_of = result.setdefault(name, {}).setdefault("chats", {})
                chats_of[n] = statistics.median(row[name] for row in rounds)
    if args.throughput_only:
        return result
    for name, target in targets.items():
        console.print(f"{name} ...")
        async with (
            target() as url,
            httpx.AsyncClient(base_url=url, headers=NO_CACHE, timeout=900) as client,
        ):
            await chats(client, 1, 8, 90)
            complete = codey_complete(client) if name == "codey" else llama_complete(client)

            async def long(i: int, client: httpx.AsyncClient = client) -> object:
                body = chat_body(chat_prompts(40 + i + 1)[-1], 1024)
                return await client.post("/v1/chat/completions", json=body)

            result[name]["typing"] = await typing(complete)
            result[name]["under_load"] = await under_load(complete, long)
            if name == "codey":
                result[name]["alone_vs_batched"] = await alone_vs_batched(client)
                result[name]["engine"] = (await client.get("/readyz")).json().get("engine")
    console.print("codey moving the code after the cursor instead of reading it ...")
    async with (
        codey_server(args.port + 1, CODEY_MODEL__SHIFT_TOKENS="32") as url,
        httpx.AsyncClient(base_url=url, headers=NO_CACHE, timeout=900) as client,
    ):
        moved = await typing(codey_complete(client))
    read = result["codey"]["typing"]["suggestions"]
    result["codey, shifting"] = {"typing": moved}
    result["shifted_suggestions_same"] = [
        sum(a == b for a, b in zip(moved["suggestions"], read, strict=True)),
        len(read),
    ]
    return result


@asynccontextmanager
async def _async(manager: AbstractContextManager[str]) -> AsyncIterator[str]:
    with manager as url:
        yield url


def report(result: dict[str, Any]) -> None:
    servers = [name for name in result if name in ("codey", "llama.cpp server")]
    columns = ["streams", "bare engine tok/s", *(f"{n} tok/s" for n in servers)]
    table = Table(
        *columns,
        "codey / bare",
        "codey / llama.cpp",
        "codey ms a step (prompts too)",
        "server ms a token (decoding)",
        "codey in llama_decode",
        title="aggregate tokens/s: medians of the rounds, and of each round's ratio",
    )
    for n in result["streams"]:
        bare = result["bare"][n]
        ours = result["codey"]["chats"][n]
        theirs = result.get("llama.cpp server", {}).get("chats", {}).get(n)
        row = [str(n), f"{bare:.1f}", f"{ours:.1f}"]
        if theirs is not None:
            row.append(f"{theirs:.1f}")
        rounds = result["rounds"][n]
        by_bare = statistics.median(r["codey"] / r["bare"] for r in rounds)
        by_server = (
            f"{statistics.median(r['codey'] / r['llama.cpp server'] for r in rounds):.2f}"
            if theirs
            else "-"
        )
        step_ms = statistics.median(r["codey step ms"] for r in rounds)
        share = statistics.median(r["codey decode share"] for r in rounds)
        theirs_ms = [r["server step ms"] for r in rounds if "server step ms" in r]
        server_ms = f"{statistics.median(theirs_ms):.1f}" if theirs_ms else "-"
        row += [f"{by_bare:.2f}", by_server, f"{step_ms:.1f}", server_ms, f"{share:.0%}"]
        table.add_row(*row)
    console.print(table)
    if "typing" not in result["codey"]:
        return
    table = Table("server", "cold s", "typed s", "typed / cold", "idle p50 s", "loaded p50 s",
                  "loaded / idle", title="completion: typing and under 4 generations")  # fmt: skip
    for name in ("codey", "llama.cpp server"):
        if name in result and "under_load" in result[name]:
            t, u = result[name]["typing"], result[name]["under_load"]
            table.add_row(
                name, f"{t['cold_s']:.2f}", f"{t['typed_s']:.2f}", f"{t['ratio']:.2f}",
                f"{u['idle_s']:.2f}", f"{u['loaded_s']:.2f}", f"{u['ratio']:.2f}",
            )  # fmt: skip
    console.print(table)
    differ, count = result["codey"]["alone_vs_batched"]
    console.print(f"greedy answers that differ alone and batched by four: {differ} of {count}")
    t = result["codey, shifting"]["typing"]
    same, typed = result["shifted_suggestions_same"]
    console.print(
        f"moving the code after the cursor: typed {t['typed_s']:.2f} s, {t['ratio']:.2f} of "
        f"cold; suggestions after a keystroke the same as when it is read: {same} of {typed} "
        f"(empty: {sum(not s for s in t['suggestions'])})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,4,8")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--port", type=int, default=8380)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds, in turn")
    parser.add_argument("--throughput-only", action="store_true", help="only part 1")
    parser.add_argument("--no-llama-server", dest="llama_server", action="store_false")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    build = inspect(disassemble=False)
    console.print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"llama-cpp-python {build.version}, {args.tokens} tokens a chat"
    )
    result = asyncio.run(run(args))
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
