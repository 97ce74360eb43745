from __future__ import annotations

import shutil

import pytest

from codey.services.code_text import check_syntax, extract_code, fenced_blocks


def test_single_fenced_block_with_language_tag() -> None:
    answer = "Here it is:\n```python\ndef f():\n    return 1\n```\nIt returns 1."
    extracted = extract_code(answer, "python")
    assert extracted.code == "def f():\n    return 1"
    (start, end) = extracted.spans[0]
    assert answer[start:end] == extracted.code


def test_no_fence_takes_the_whole_answer() -> None:
    answer = "\ndef f(x):\n    return x * 2\n"
    assert extract_code(answer, "python").code == "def f(x):\n    return x * 2"


def test_several_blocks_in_the_language_are_joined_and_others_dropped() -> None:
    answer = (
        "```python\nimport os\n```\nThen run:\n```bash\npip install x\n```\n"
        "and\n```py\ndef g():\n    pass\n```"
    )
    extracted = extract_code(answer, "python")
    assert extracted.code == "import os\n\ndef g():\n    pass"
    assert [answer[a:b] for a, b in extracted.spans] == ["import os", "def g():\n    pass"]


def test_blocks_of_another_language_are_used_when_none_match() -> None:
    answer = "```javascript\nconst x = 1;\n```"
    assert extract_code(answer, "python").code == "const x = 1;"


def test_untagged_block_counts_for_any_language() -> None:
    answer = "```\nfn main() {}\n```"
    assert extract_code(answer, "rust").code == "fn main() {}"


def test_tilde_fences_longer_fences_and_info_strings() -> None:
    answer = "~~~ts title=a.ts\nlet a: number = 1;\n~~~\n````go\nfunc f() {}\n```\n````"
    blocks = fenced_blocks(answer)
    assert [(b.language, b.code) for b in blocks] == [
        ("ts", "let a: number = 1;"),
        ("go", "func f() {}\n```"),
    ]
    assert extract_code(answer, "typescript").code == "let a: number = 1;"


def test_unclosed_fence_runs_to_the_end() -> None:
    answer = "```python\ndef f():\n    return 2\n"
    assert extract_code(answer, "python").code == "def f():\n    return 2"


def test_python_syntax_is_checked_with_ast() -> None:
    assert check_syntax("def f():\n    return 1\n", "python").valid is True
    report = check_syntax("def f(:\n", "python")
    assert report.valid is False
    assert report.checker == "python-ast"
    assert "line 1" in (report.error or "")


def test_json_syntax() -> None:
    assert check_syntax('{"a": [1, 2]}', "json").valid is True
    assert check_syntax('{"a": [1, 2}', "json").valid is False


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_is_checked_by_the_compiler() -> None:
    assert check_syntax("int add(int a, int b) { return a + b; }", "c").valid is True
    assert check_syntax("int add(int a, int b) { return a + ; }", "c").valid is False


def test_bash_is_checked_by_bash() -> None:
    assert check_syntax("for i in 1 2; do echo $i; done", "sh").valid is True
    assert check_syntax("for i in 1 2; do echo $i", "bash").valid is False


def test_unknown_language_is_reported_as_unchecked() -> None:
    report = check_syntax("whatever", "cobol")
    assert report.valid is None
    assert report.checker is None
