"""Post-processing of raw completions: scope at the cursor, suffix overlap, and kind.

The model often writes past the hole; these functions cut its text back to what belongs at the
cursor, and name what a suggestion is by parsing it.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from typing import Literal

from pygments.lexers import get_lexer_by_name
from pygments.token import Comment, Keyword, Name, Operator, Punctuation, Text, _TokenType
from pygments.util import ClassNotFound

from codey.services.code_text import normalise_language

Scope = Literal["line", "block"]


@dataclass(frozen=True)
class Cursor:
    """Where the cursor stands: the current line around it and the indentation of its block."""

    line_prefix: str
    line_suffix: str
    scope: Scope
    block_indent: int
    next_indent: int | None = None
    """Indentation of the first code line after the cursor's line; None at the end of code."""


def _indent_of(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def _opens_block(line: str) -> bool:
    return line.rstrip().endswith((":", "{", "(", "["))


def cursor_at(prefix: str, suffix: str) -> Cursor:
    """Decide whether the cursor asks for the rest of a line or for a block of lines."""
    line_prefix = prefix.rsplit("\n", 1)[-1]
    line_suffix, _, after = suffix.partition("\n")
    following = next((ln for ln in after.split("\n") if ln.strip()), None)
    next_indent = None if following is None else _indent_of(following)
    if line_prefix.strip():
        return Cursor(line_prefix, line_suffix, "line", _indent_of(line_prefix), next_indent)
    if line_prefix:
        return Cursor(line_prefix, line_suffix, "block", _indent_of(line_prefix), next_indent)
    previous = next((ln for ln in reversed(prefix.split("\n")[:-1]) if ln.strip()), "")
    indent = _indent_of(previous) + (1 if _opens_block(previous) else 0)
    return Cursor(line_prefix, line_suffix, "block", indent, next_indent)


def heal_prefix(prefix: str) -> tuple[str, str]:
    """Split trailing spaces off the cursor line: tokenizers merge indentation with the next
    word, so a prompt ending in bare spaces asks the model for an unnatural token."""
    healed = prefix.rstrip(" \t")
    if "\n" in prefix[len(healed) :]:
        return prefix, ""
    return healed, prefix[len(healed) :]


def unheal(text: str, removed: str) -> str:
    """Drop from the model's text the indentation that the cursor line already has."""
    if not removed:
        return text
    if text.startswith(removed):
        return text[len(removed) :]
    return text.lstrip(" \t")


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def drop_prefix_echo(text: str, line_prefix: str) -> str:
    """Remove a restart of the cursor line: after `import numpy as` the model may write
    `numpy as np` or ` as np`; the words it repeats are already in the file."""
    line = line_prefix.strip()
    body = text.lstrip(" \t")
    if not line or not body:
        return text
    for k in range(min(len(line), len(body)), 1, -1):
        tail = line[-k:]
        starts_word = k == len(line) or not _is_word_char(line[-k - 1])
        ends_word = not (body[k : k + 1] and _is_word_char(body[k]) and _is_word_char(tail[-1]))
        if starts_word and ends_word and tail.strip() == tail and body.startswith(tail):
            return body[k:]
    return text


def stop_at_scope(text: str, cursor: Cursor) -> str:
    """Keep what belongs at the cursor: the rest of its line, or the lines of a block.

    Where code follows in the same block, only the current line (and the body of a block it
    opens, unless that body is already there) is kept: the code after the hole is the
    suffix's, not the model's to write again.
    """
    lines = text.split("\n")
    start = 0
    if cursor.scope == "block" and not lines[0].strip() and len(lines) > 1:
        start = 1  # the model began with a newline: its first line is the next one
    first = lines[start]
    first_indent = _indent_of(cursor.line_prefix + first if start == 0 else first)
    kept = lines[: start + 1]
    opens = _opens_block(cursor.line_prefix + first)
    nxt = cursor.next_indent
    if opens and (nxt is None or nxt <= first_indent):
        body_indent = first_indent + 1  # the block's body is missing: write it
    elif cursor.scope == "block" and not opens and (nxt is None or nxt < cursor.block_indent):
        body_indent = cursor.block_indent  # the end of a block: several statements may go here
    else:
        return "\n".join(kept).rstrip()
    for line in lines[start + 1 :]:
        if line.strip() and _indent_of(line) < body_indent:
            if opens and line.strip()[0] in "}])" and _indent_of(line) >= first_indent:
                kept.append(line)  # the closing line of the block the first line opened
            break
        kept.append(line)
    return "\n".join(kept).rstrip()


def trim_suffix_overlap(text: str, suffix: str) -> str:
    """Remove what the suffix already holds: a line equal to the suffix's first code line and
    all after it, and any tail of `text` that the suffix begins with."""
    anchor = next((ln.strip() for ln in suffix.split("\n") if ln.strip()), "")
    if any(ch.isalnum() for ch in anchor):
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if line.strip() == anchor:
                text = "\n".join(lines[:i])
                break
    for k in range(min(len(text), len(suffix)), 0, -1):
        if suffix[:k].strip() and text.endswith(suffix[:k]):
            return text[:-k]
    return text


def postprocess(text: str, prefix: str, suffix: str) -> str:
    """Scope then trim; the result is what is inserted at the cursor (maybe empty)."""
    cursor = cursor_at(prefix, suffix)
    scoped = stop_at_scope(text, cursor)
    trimmed = trim_suffix_overlap(scoped, suffix).rstrip()
    return trimmed if trimmed.strip() else ""


_DEFINES = ("def ", "async def ", "class ", "@")


def first_line(text: str) -> str:
    """The first line with code, stripped: what an editor shows first."""
    return next((line.strip() for line in text.split("\n") if line.strip()), "")


def misfit(text: str, prefix: str, suffix: str) -> str | None:
    """Why a post-processed suggestion does not fit the hole, or None if it may: it is empty,
    opens a Markdown fence, or opens a new definition inside a function's body. (Repeating a
    line next to the cursor is no misfit: real code repeats its lines in sibling branches.)"""
    first = first_line(text)
    if not first:
        return "empty"
    if first.startswith("```"):
        return "a Markdown fence"
    cursor = cursor_at(prefix, suffix)
    if first.startswith(_DEFINES) and not cursor.line_prefix.strip():
        header = _enclosing_header(prefix, cursor.block_indent)
        if header is not None and not header.startswith("class "):
            return "a new definition inside a body"
    return None


def _enclosing_header(prefix: str, indent: int) -> str | None:
    """The nearest line above the cursor indented less than `indent` (the header of the block
    the cursor is in), stripped; None at the top level."""
    if indent <= 0:
        return None
    for line in reversed(prefix.split("\n")[:-1]):
        if line.strip() and _indent_of(line) < indent:
            return line.strip()
    return None


Kind = Literal[
    "function", "class", "import", "variable", "return", "control", "call", "expression",
    "comment", "statement",
]  # fmt: skip

_PY_KINDS: dict[type[ast.AST], Kind] = {
    ast.FunctionDef: "function", ast.AsyncFunctionDef: "function", ast.ClassDef: "class",
    ast.Import: "import", ast.ImportFrom: "import", ast.Assign: "variable",
    ast.AnnAssign: "variable", ast.AugAssign: "variable", ast.Return: "return",
    ast.If: "control", ast.For: "control", ast.AsyncFor: "control", ast.While: "control",
    ast.With: "control", ast.AsyncWith: "control", ast.Try: "control", ast.Raise: "control",
    ast.Match: "control",
}  # fmt: skip


def suggestion_kind(text: str, line_prefix: str = "", language: str | None = "python") -> Kind:
    """What the suggestion is, from parsing the completed line(s) it makes at the cursor."""
    source = line_prefix + text if line_prefix.strip() else text
    source = textwrap.dedent(source.strip("\n"))
    if normalise_language(language) == "python":
        kind = _python_kind(source)
        if kind:
            return kind
    return _lexed_kind(source, language)


def _python_kind(source: str) -> Kind | None:
    # A header without its body ("def f(x):") parses once a body is supplied.
    for candidate in (source, source + "\n    pass"):
        try:
            tree = ast.parse(candidate)
        except SyntaxError:
            continue
        if not tree.body:
            return "comment"
        node = tree.body[0]
        if isinstance(node, ast.Expr):
            return "call" if isinstance(node.value, ast.Call) else "expression"
        return _PY_KINDS.get(type(node), "statement")
    return None


_DECLARES: dict[str, Kind] = {
    "def": "function", "function": "function", "fn": "function", "func": "function",
    "fun": "function", "class": "class", "struct": "class", "interface": "class",
    "enum": "class", "trait": "class", "impl": "class", "type": "class",
    "import": "import", "from": "import", "use": "import", "using": "import",
    "require": "import", "package": "import", "include": "import",
    "const": "variable", "let": "variable", "var": "variable", "val": "variable",
    "return": "return", "if": "control", "else": "control", "for": "control",
    "while": "control", "switch": "control", "match": "control", "try": "control",
    "do": "control", "throw": "control", "raise": "control", "with": "control",
}  # fmt: skip


def _lexed_kind(source: str, language: str | None) -> Kind:
    try:
        lexer = get_lexer_by_name(normalise_language(language) or "text")
    except ClassNotFound:
        lexer = get_lexer_by_name("text")
    tokens = [(t, v) for t, v in lexer.get_tokens(source) if v.strip() and t not in Text]
    if not tokens:
        return "statement"
    if all(t in Comment and t not in Comment.Preproc for t, _ in tokens):
        return "comment"
    tokens = [
        (t, v)
        for t, v in tokens
        if (t not in Comment or t in Comment.Preproc) and v.strip("#").strip()
    ]
    first_type, first = tokens[0]
    word = first.lstrip("#").split()[0] if first.lstrip("#").split() else first
    if first_type in Keyword or first_type in Comment.Preproc or word in ("def", "fn"):
        kind = _DECLARES.get(word)
        if kind == "variable" and _assigns_function(tokens):
            return "function"
        if kind:
            return kind
    return _shape_kind(tokens, first_type)


def _assigns_function(tokens: list[tuple[_TokenType, str]]) -> bool:
    values = [v for _, v in tokens]
    if "=" not in values:
        return False
    after = values[values.index("=") + 1 :]
    return "=>" in after or (bool(after) and after[0] in ("function", "async"))


def _shape_kind(tokens: list[tuple[_TokenType, str]], first_type: _TokenType) -> Kind:
    # Skip a type or qualifiers before the name: `int x = 1`, `self.count += 1`.
    names = 0
    for token_type, value in tokens:
        if token_type in Name or token_type in Keyword.Type or value == ".":
            names += 1
            continue
        if token_type in Operator and value.endswith("=") and value not in ("==", "!=", "<=", ">="):
            return "variable" if names else "expression"
        if token_type in Punctuation and value == "(":
            return "call" if names else "expression"
        break
    if first_type in Name or first_type in Keyword:
        return "statement"
    return "expression"
