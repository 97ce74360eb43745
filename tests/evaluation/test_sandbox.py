from __future__ import annotations

from codey.evaluation.sandbox import run_program


def test_a_passing_program() -> None:
    assert run_program("assert sum([1, 2]) == 3").passed


def test_a_failing_assertion_is_reported() -> None:
    verdict = run_program("assert 1 == 2, 'wrong'")
    assert not verdict.passed and verdict.reason == "failed: AssertionError: wrong"


def test_an_endless_loop_times_out() -> None:
    verdict = run_program("while True:\n    pass", timeout=1.5)
    assert verdict == verdict.__class__(False, "timed out")


def test_memory_is_limited() -> None:
    verdict = run_program("blob = bytearray(3 * 1024 ** 3)", memory_mb=256)
    assert not verdict.passed and "MemoryError" in verdict.reason


def test_the_program_sees_no_environment_and_an_empty_directory() -> None:
    program = "import os\nassert os.listdir('.') == []\nassert 'CODEY' not in str(os.environ)"
    assert run_program(program).passed
