from __future__ import annotations

import pytest

from codey.services.suggestions import (
    cursor_at,
    drop_prefix_echo,
    heal_prefix,
    misfit,
    postprocess,
    stop_at_scope,
    suggestion_kind,
    trim_suffix_overlap,
    unheal,
)

BODY_PREFIX = "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    "
BODY_SUFFIX = "\n    return result\n\n\ndef median(xs):\n    pass\n"


def test_cursor_mid_line_asks_for_the_rest_of_the_line() -> None:
    cursor = cursor_at("x = compute(", ")\nprint(x)")
    assert cursor.scope == "line"
    assert cursor.line_prefix == "x = compute("
    assert cursor.line_suffix == ")"


def test_cursor_on_indented_empty_line_asks_for_a_block_at_that_indent() -> None:
    cursor = cursor_at(BODY_PREFIX, BODY_SUFFIX)
    assert cursor.scope == "block"
    assert cursor.block_indent == 4


def test_cursor_at_column_one_after_a_block_opener_indents_deeper() -> None:
    cursor = cursor_at("def f(x):\n", "")
    assert cursor.scope == "block"
    assert cursor.block_indent == 1  # anything indented belongs to the body


def test_line_scope_stops_at_the_end_of_the_line() -> None:
    cursor = cursor_at("total = ", "\n")
    assert stop_at_scope("sum(xs)\nprint(total)\n", cursor) == "sum(xs)"


def test_line_that_opens_a_block_keeps_its_body() -> None:
    cursor = cursor_at("    for x in", "")
    text = " xs:\n        total += x\n    return total"
    assert stop_at_scope(text, cursor) == " xs:\n        total += x"


def test_at_the_end_of_a_block_several_statements_stop_where_the_code_dedents() -> None:
    cursor = cursor_at(BODY_PREFIX, "\n\ndef median(xs):\n    pass\n")
    text = "result = total / len(xs)\n    print(result)\n\ndef median(xs):\n    return 0"
    assert stop_at_scope(text, cursor) == "result = total / len(xs)\n    print(result)"


def test_where_code_follows_in_the_block_only_the_line_is_kept() -> None:
    cursor = cursor_at(BODY_PREFIX, BODY_SUFFIX)
    text = "result = total / len(xs)\n    print(result)\n    return result"
    assert stop_at_scope(text, cursor) == "result = total / len(xs)"


def test_a_block_whose_body_follows_the_cursor_gets_only_its_header() -> None:
    prefix = "def pairs(xs):\n    "
    suffix = "\n        yield x, x\n    return\n"
    text = "for x in xs:\n        yield x, x\n    return"
    assert stop_at_scope(text, cursor_at(prefix, suffix)) == "for x in xs:"


def test_a_block_opened_before_code_at_its_own_level_gets_its_body() -> None:
    prefix = "def total(xs):\n    t = 0\n    "
    suffix = "\n    return t\n"
    text = "for x in xs:\n        t += x\n    return t"
    assert stop_at_scope(text, cursor_at(prefix, suffix)) == "for x in xs:\n        t += x"


def test_brace_block_keeps_its_closing_line() -> None:
    cursor = cursor_at("function f(xs) {\n  if (xs.length === 0)", "\n}\n")
    text = " {\n    return 0;\n  }\n  return 1;\n}"
    assert stop_at_scope(text, cursor) == " {\n    return 0;\n  }"


def test_trim_drops_a_repeated_suffix_line_and_what_follows() -> None:
    text = "result = total / len(xs)\n    return result\n\ndef median(xs):"
    assert trim_suffix_overlap(text, BODY_SUFFIX) == "result = total / len(xs)"


def test_trim_removes_a_tail_that_the_suffix_starts_with() -> None:
    assert trim_suffix_overlap("compute(a, b))", "))\nprint(x)") == "compute(a, b"
    assert trim_suffix_overlap('name"]', '"]\n') == "name"


def test_trim_ignores_whitespace_only_overlap_and_short_anchor_lines() -> None:
    assert trim_suffix_overlap("x = 1\n", "\n}") == "x = 1\n"
    assert trim_suffix_overlap("if a {\n}\nfoo()", "}\n") == "if a {\n}\nfoo()"


def test_postprocess_never_returns_the_suffix_first_line() -> None:
    text = "    return result\n"
    assert postprocess(text, BODY_PREFIX, BODY_SUFFIX) == ""


@pytest.mark.parametrize(
    ("text", "line_prefix", "expected"),
    [
        (" as np", "import numpy as", " np"),
        ("numpy as np", "import numpy as", " np"),
        (" np", "import numpy as", " np"),
        (" assert x", "import numpy as", " assert x"),  # a longer word is not an echo
        ("a + b", "    return a", "a + b"),  # one letter is too short to call an echo
        ("result = 1", "", "result = 1"),
    ],
)
def test_drop_prefix_echo(text: str, line_prefix: str, expected: str) -> None:
    assert drop_prefix_echo(text, line_prefix) == expected


def test_heal_moves_trailing_indentation_out_of_the_prompt() -> None:
    assert heal_prefix("def f():\n    ") == ("def f():\n", "    ")
    assert heal_prefix("x = 1") == ("x = 1", "")
    assert heal_prefix("x = ") == ("x =", " ")
    assert unheal("    return 1", "    ") == "return 1"
    assert unheal("  return 1", "    ") == "return 1"
    assert unheal(" 1", " ") == "1"


@pytest.mark.parametrize(
    ("text", "line_prefix", "kind"),
    [
        ("def area(r):\n    return 3.14 * r * r", "", "function"),
        ("async def fetch(url):", "", "function"),
        ("class Stack:\n    pass", "", "class"),
        ("import os", "", "import"),
        ("from typing import Any", "", "import"),
        ("result = total / len(xs)", "", "variable"),
        ("count += 1", "", "variable"),
        ("return total", "", "return"),
        ("for x in xs:", "", "control"),
        ("if x > 1:\n    y = 2", "", "control"),
        ("print(total)", "", "call"),
        ("total / len(xs)", "result = ", "variable"),
        ("(a, b)", "print", "call"),
        ("# the mean of xs", "", "comment"),
        ("x + y", "", "expression"),
    ],
)
def test_python_kinds_come_from_the_syntax_tree(text: str, line_prefix: str, kind: str) -> None:
    assert suggestion_kind(text, line_prefix, "python") == kind


def test_broken_python_falls_back_to_lexing() -> None:
    assert suggestion_kind("def area(r", "", "python") == "function"
    assert suggestion_kind("result = compute(", "", "python") == "variable"


@pytest.mark.parametrize(
    ("text", "language", "kind"),
    [
        ("function area(r) {\n  return r * r;\n}", "javascript", "function"),
        ("const area = (r) => r * r;", "javascript", "function"),
        ("const total = 0;", "javascript", "variable"),
        ("import { readFile } from 'fs';", "javascript", "import"),
        ("class Stack {}", "typescript", "class"),
        ("fn area(r: f64) -> f64 {", "rust", "function"),
        ("use std::io;", "rust", "import"),
        ("func Area(r float64) float64 {", "go", "function"),
        ("#include <stdio.h>", "c", "import"),
        ("int total = 0;", "c", "variable"),
        ("return total;", "java", "return"),
        ('printf("%d", x);', "c", "call"),
        ("// add them up", "javascript", "comment"),
        ("while (i < n) {", "cpp", "control"),
    ],
)
def test_other_languages_are_classified_from_their_tokens(
    text: str, language: str, kind: str
) -> None:
    assert suggestion_kind(text, "", language) == kind


@pytest.mark.parametrize(
    ("text", "prefix", "suffix", "reason"),
    [
        ("```python", "def f():\n    ", "\n", "a Markdown fence"),
        ("def helper(x):", "def f(a):\n    y = a\n    ", "\n    return y\n",
         "a new definition inside a body"),
        ("@property", "def f(a):\n    y = a\n    ", "\n", "a new definition inside a body"),
        ("  ", "def f():\n    ", "\n", "empty"),
    ],
)  # fmt: skip
def test_misfits_name_why_they_cannot_fill_the_hole(
    text: str, prefix: str, suffix: str, reason: str
) -> None:
    assert misfit(text, prefix, suffix) == reason


@pytest.mark.parametrize(
    ("text", "prefix", "suffix"),
    [
        ("def helper(self):", "class A:\n    x = 1\n\n    ", "\n"),  # a method in a class
        ("def main():", "import os\n\n", "\n"),  # at the top level
        ("total += x", "def f(xs):\n    for x in xs:\n        ", "\n    return total\n"),
        ("x = 1", "def f():\n    x = 1\n    ", "\n"),  # lines repeat in real code
        ("with self.lock:", "def f(self):\n    with self.lock:\n        a()\n    ", "\n"),
    ],
)
def test_code_that_fits_is_no_misfit(text: str, prefix: str, suffix: str) -> None:
    assert misfit(text, prefix, suffix) is None
