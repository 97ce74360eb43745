from __future__ import annotations

from codey.evaluation import humaneval
from codey.evaluation.sandbox import run_program


def test_the_canonical_solutions_pass_through_the_same_harness() -> None:
    for problem in humaneval.load(10):
        code = problem["prompt"] + problem["canonical_solution"]
        assert run_program(humaneval.program_for(problem, code)).passed, problem["task_id"]


def test_a_wrong_solution_fails() -> None:
    problem = humaneval.load(1)[0]
    code = problem["prompt"] + "    return None\n"
    assert not run_program(humaneval.program_for(problem, code)).passed


def test_masking_every_line_of_a_solution() -> None:
    problem = humaneval.load(3)[2]  # truncate_number: one line
    masked = list(humaneval.masked_lines(problem))
    assert len(masked) == 1
    _, prefix, suffix, line = masked[0]
    assert line.strip() == "return number % 1.0"
    assert prefix.endswith("    ") and prefix.startswith(problem["prompt"])
    filled = prefix + line.strip() + suffix
    tests = f"\n{problem['test']}\ncheck({problem['entry_point']})\n"
    assert run_program(filled + tests).passed
