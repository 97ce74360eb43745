"""Prompt lookup (speculative decoding with drafts taken from the prompt) per service, one run.

    .venv/bin/python bench/lookup.py [--cases 6] [--drafts 0,4,8]

The same cases go through codey's generation, chat and completion services on the embedded
engine with `draft_tokens` at each value, greedy; the engine's cache is emptied before each case
so every configuration reads every prompt cold. Cases come from real, widely used code (the
functions of click, rich, httpx, pydantic, jinja2 ... as installed beside codey):

- generation: a function's signature and docstring, to be implemented;
- edit (chat): "add type hints and a docstring" to a function, which restates most of it;
- explain (chat): what a function does, in prose;
- completion: a line of a function removed, prefix and suffix around it, three suggestions.

Reported per service and draft size: answer tokens/s over the whole requests, how many drafted
tokens the model accepted, and how many answers differ from the answers without drafts.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import importlib.util
import platform
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import track
from rich.table import Table

from codey.backends.base import Message
from codey.backends.llamacpp import LlamaCppBackend
from codey.config import SamplingDefaults, load_settings
from codey.services.chat import ChatService, system_prompt
from codey.services.completion import CompletionRequest, CompletionService
from codey.services.generation import GenerationRequest, GenerationService
from codey.services.sampling import Sampling

console = Console(width=120)
PACKAGES = ("click", "rich", "httpx", "pydantic", "jinja2", "markdown_it", "pygments", "fastapi")
SEED = 11


@dataclass(frozen=True)
class Function:
    module: str
    source: str
    """The module's whole text."""
    start: int
    end: int
    """Character offsets of the function in `source`."""
    doc: str | None
    header: str
    """The `def` line(s), up to the colon."""

    @property
    def code(self) -> str:
        return self.source[self.start : self.end]


def functions(count: int) -> list[Function]:
    """`count` functions of 8 to 40 lines with a docstring, drawn evenly from PACKAGES."""
    rng = random.Random(SEED)
    per_package: list[list[Function]] = []
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        found = []
        for path in sorted(Path(spec.origin).parent.rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            lines = source.splitlines(keepends=True)
            offsets = [0]
            for line in lines:
                offsets.append(offsets[-1] + len(line))
            for node in ast.walk(ast.parse(source)):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                doc = ast.get_docstring(node)
                if doc is None or not 8 <= node.end_lineno - node.lineno <= 40:  # type: ignore[operator]
                    continue
                start, end = offsets[node.lineno - 1], offsets[node.end_lineno]  # type: ignore[index]
                header = source[start : offsets[node.body[0].lineno - 1]].rstrip()
                found.append(Function(f"{package}/{path.name}", source, start, end, doc, header))
        if found:
            per_package.append(rng.sample(found, min(len(found), count)))
    chosen = [f for group in zip(*per_package, strict=False) for f in group]
    return chosen[:count]


def generation_case(f: Function) -> GenerationRequest:
    body = f'{f.header}\n    """{f.doc}"""\n'
    return GenerationRequest(prompt=f"Implement this function:\n\n{body}", max_tokens=256)


def chat_case(f: Function, ask: str) -> list[Message]:
    return [
        Message("system", system_prompt(None, None)),
        Message("user", f"{ask}\n\n```python\n{f.code}```"),
    ]


def completion_case(f: Function, rng: random.Random) -> CompletionRequest:
    lines = f.code.splitlines(keepends=True)
    cut = rng.randrange(len(f.header.splitlines()) + 1, len(lines) - 1)
    at = f.start + sum(map(len, lines[:cut]))
    removed = len(lines[cut])
    prefix = f.source[max(0, at - 1500) : at]
    suffix = f.source[at + removed : at + removed + 500]
    return CompletionRequest(prefix=prefix, suffix=suffix)


async def run(args: argparse.Namespace) -> None:
    settings = load_settings(model={"context_length": 4096})
    backend = LlamaCppBackend.load(settings.model)
    cases = functions(args.cases)
    rng = random.Random(SEED)
    completions = [completion_case(f, rng) for f in cases]
    console.print(
        f"{len(cases)} functions from {', '.join(sorted({f.module.split('/')[0] for f in cases}))}"
    )

    def services(draft: int) -> dict[str, Callable[[int], Awaitable[str]]]:
        def tuned(defaults: SamplingDefaults) -> SamplingDefaults:
            return defaults.model_copy(update={"draft_tokens": draft, "temperature": 0.0})

        generation = GenerationService(backend, tuned(settings.generation))
        chat = ChatService(backend, None, tuned(settings.chat))  # type: ignore[arg-type]
        completion = CompletionService(backend, tuned(settings.completion))
        chat_sampling = Sampling(max_tokens=256)

        async def generate(i: int) -> str:
            return (await generation.generate(generation_case(cases[i]))).code

        async def edit(i: int) -> str:
            ask = "Add type hints to every parameter and the return value; keep the code as is."
            reply = await chat.reply(chat_case(cases[i], ask), chat_sampling)
            return reply.choices[0].text

        async def explain(i: int) -> str:
            ask = "Explain briefly what this function does."
            reply = await chat.reply(chat_case(cases[i], ask), chat_sampling)
            return reply.choices[0].text

        async def complete(i: int) -> str:
            result = await completion.complete(completions[i])
            return "\n---\n".join(s.completion for s in result.suggestions)

        return {"generation": generate, "edit": edit, "explain": explain, "completion": complete}

    drafts = [int(d) for d in args.drafts.split(",")]
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    baseline: dict[tuple[str, int], str] = {}
    for draft in drafts:
        for name, call in services(draft).items():
            seconds, before = 0.0, dict(backend.engine.stats)
            differ = 0
            for i in track(range(len(cases)), description=f"{name}, draft {draft}"):
                await backend.engine.reset()
                started = time.perf_counter()
                text = await call(i)
                seconds += time.perf_counter() - started
                if draft == drafts[0]:
                    baseline[(name, i)] = text
                differ += text != baseline[(name, i)]
            after = backend.engine.stats
            counted = ("decoded", "drafted", "accepted")
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in counted}
            rows[(name, draft)] = {"seconds": seconds, "differ": differ, **delta}
    await backend.close()

    table = Table(title=f"Prompt lookup, {len(cases)} cases per service, greedy, cold cache")
    columns = ("service", "draft", "tokens", "seconds", "tokens/s", "vs off", "accepted", "differ")
    for column in columns:
        table.add_column(column, justify="left" if column == "service" else "right")
    for (name, draft), row in rows.items():
        off = rows[(name, drafts[0])]
        rate = row["decoded"] / row["seconds"]
        accepted = f"{row['accepted']}/{row['drafted']}" if row["drafted"] else "-"
        table.add_row(
            name,
            str(draft),
            str(row["decoded"]),
            f"{row['seconds']:.1f}",
            f"{rate:.1f}",
            f"{rate / (off['decoded'] / off['seconds']):.2f}x",
            accepted,
            f"{row['differ']}/{len(cases)}",
        )
    console.print(table)
    console.print(f"{platform.processor() or platform.machine()}, {settings.model.threads} threads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--drafts", default="0,4,8")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
