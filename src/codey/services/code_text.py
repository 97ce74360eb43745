"""Getting code out of a model's answer and checking that it parses."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# A fence opens with 3+ backticks or tildes and an optional info string; it closes with the
# same character repeated at least as often, alone on its line.
_FENCE_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$", re.M)


@dataclass(frozen=True)
class CodeBlock:
    language: str | None
    code: str
    start: int
    """Offset of `code` in the answer it was taken from."""


def fenced_blocks(answer: str) -> list[CodeBlock]:
    """Every fenced block in `answer`, in order; an unclosed last fence runs to the end."""
    blocks: list[CodeBlock] = []
    pos = 0
    while match := _FENCE_OPEN.search(answer, pos):
        fence = match.group("fence")
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.M)
        body_start = match.end() + 1
        end = close.search(answer, body_start)
        body = answer[body_start : end.start() if end else len(answer)]
        info = match.group("info").strip().split()
        blocks.append(CodeBlock(info[0].lower() if info else None, body.rstrip("\n"), body_start))
        if not end:
            break
        pos = end.end()
    return blocks


_ALIASES = {
    "py": "python", "python3": "python", "js": "javascript", "node": "javascript",
    "ts": "typescript", "sh": "bash", "shell": "bash", "c++": "cpp", "cc": "cpp",
    "golang": "go", "rs": "rust", "kt": "kotlin", "cs": "csharp", "c#": "csharp",
}  # fmt: skip


def normalise_language(language: str | None) -> str | None:
    if language is None:
        return None
    lang = language.strip().lower()
    return _ALIASES.get(lang, lang) or None


@dataclass(frozen=True)
class ExtractedCode:
    code: str
    spans: list[tuple[int, int]]
    """Where the pieces of `code` lie in the answer, as [start, end) offsets."""


def extract_code(answer: str, language: str | None = None) -> ExtractedCode:
    """The code in a model's answer.

    With fences, the blocks in the requested language (or untagged ones) are joined; if none
    match, all blocks are. Without fences the whole answer is taken as code.
    """
    blocks = fenced_blocks(answer)
    if not blocks:
        code = answer.strip("\n")
        start = answer.find(code)
        return ExtractedCode(code, [(start, start + len(code))])
    wanted = normalise_language(language)
    matching = [b for b in blocks if normalise_language(b.language) in (wanted, None)]
    chosen = [b for b in matching or blocks if b.code.strip()]
    return ExtractedCode(
        "\n\n".join(b.code for b in chosen), [(b.start, b.start + len(b.code)) for b in chosen]
    )


@dataclass(frozen=True)
class SyntaxReport:
    """Whether code parses. `valid` is None when no checker exists for the language."""

    valid: bool | None
    checker: str | None = None
    error: str | None = None


# Languages checked by an external compiler or interpreter, when it is installed.
_EXTERNAL_CHECKERS: dict[str, tuple[str, list[str]]] = {
    "javascript": (".js", ["node", "--check"]),
    "c": (".c", ["gcc", "-fsyntax-only", "-w"]),
    "cpp": (".cpp", ["g++", "-fsyntax-only", "-w"]),
    "bash": (".sh", ["bash", "-n"]),
}


def check_syntax(code: str, language: str | None, *, timeout: float = 10.0) -> SyntaxReport:
    """Parse `code` with the best checker available for `language`."""
    lang = normalise_language(language)
    if lang == "python":
        try:
            ast.parse(code)
        except SyntaxError as exc:
            return SyntaxReport(False, "python-ast", f"line {exc.lineno}: {exc.msg}")
        return SyntaxReport(True, "python-ast")
    if lang == "json":
        try:
            json.loads(code)
        except ValueError as exc:
            return SyntaxReport(False, "json", str(exc))
        return SyntaxReport(True, "json")
    if lang in _EXTERNAL_CHECKERS:
        return _check_external(code, lang, timeout)
    return SyntaxReport(None)


def _check_external(code: str, lang: str, timeout: float) -> SyntaxReport:
    suffix, command = _EXTERNAL_CHECKERS[lang]
    if shutil.which(command[0]) is None:
        return SyntaxReport(None)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"snippet{suffix}"
        source.write_text(code)
        try:
            run = subprocess.run(
                [*command, str(source)], capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return SyntaxReport(None, command[0], "checker timed out")
    if run.returncode == 0:
        return SyntaxReport(True, command[0])
    message = (run.stderr or run.stdout).strip().replace(str(source), "<code>")
    return SyntaxReport(False, command[0], message.splitlines()[0] if message else None)
