"""The real-code infilling set: deterministic, whole, and scored as it says."""

from __future__ import annotations

import pytest

from codey.evaluation import realcode

SMALL = ("cachetools", "tenacity", "platformdirs")


def test_the_same_seed_gives_the_same_cases_and_another_seed_others() -> None:
    first = realcode.cases(30, 10, 6, packages=SMALL)
    again = realcode.cases(30, 10, 6, packages=SMALL)
    other = realcode.cases(30, 10, 6, seed=realcode.SEED + 1, packages=SMALL)
    assert first == again
    assert [c.id for c in first] != [c.id for c in other]


def test_each_case_masks_whole_code_of_its_file() -> None:
    for case in realcode.cases(30, 10, 6, packages=SMALL):
        source = realcode._source(case)
        assert case.prefix + case.middle + case.suffix in source
        assert case.middle.endswith("\n") and case.middle.strip()
        assert case.prefix.endswith((" ", "\t", "\n"))  # the cursor at the indentation
        assert len(case.prefix) <= realcode.BEFORE and len(case.suffix) <= realcode.AFTER
        assert realcode.parses(case, case.middle)  # the masked code put back parses
        assert realcode.parses(case, case.middle.rstrip("\n"))  # as a suggestion comes
        if case.kind == "line":
            assert case.middle.count("\n") == 1
        if case.kind == "block":
            assert 2 <= case.middle.count("\n") <= 6
        if case.kind == "cross_file":
            (definition,) = case.files
            assert definition.path != case.path and definition.text.strip()


@pytest.mark.slow
def test_the_whole_set_has_300_lines_100_blocks_and_cross_file_calls() -> None:
    every = realcode.cases()
    kinds = {kind: [c for c in every if c.kind == kind] for kind in ("line", "block")}
    assert len(kinds["line"]) == 300 and len(kinds["block"]) == 100
    assert len([c for c in every if c.kind == "cross_file"]) >= 50
    assert {c.split for c in every} == {"dev", "held_out"}
    assert len({(c.kind, c.id) for c in every}) == len(every)


def test_scores_look_at_the_first_line_of_code() -> None:
    case = realcode.Case("p/m.py:1", "line", "dev", "p/m.py", "    ", "\n", "x = compute(a)\n")
    assert realcode.exact(case, "x = compute(a)  ")
    assert realcode.exact(case, "\nx = compute(a)\ny = 2")
    assert not realcode.exact(case, "x = compute(b)")
    assert realcode.similarity(case, "x = compute(a)") == 1.0
    assert 0.8 < realcode.similarity(case, "x = compute(b)") < 1.0
    assert realcode.similarity(case, "") == 0.0
    block = realcode.Case("p/m.py:1", "block", "dev", "p/m.py", "    ", "\n",
                          "if a:\n        b()\n")  # fmt: skip
    assert realcode.block_exact(block, "if a:\n        b()")
    assert not realcode.block_exact(block, "if a:\n        b()\n    c()")
