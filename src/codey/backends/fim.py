"""Fill-in-the-middle prompt templates, one row per model family.

A family is recognised by its sentinel tokens: if the tokenizer turns a template's prefix marker
into a single special token, the model was trained with that template.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceFile:
    """Another file of the project, shown to the model before the code at the cursor."""

    path: str
    text: str


def as_plain_code(file: SourceFile) -> str:
    """A file shown without a repository format: its code, then a blank line."""
    return f"{file.text.rstrip()}\n\n"


Pieces = list[tuple[str, bool]]
RepoParts = tuple[Pieces, list[Pieces], Pieces]


@dataclass(frozen=True)
class FimTemplate:
    """Sentinels around prefix and suffix (prefix-suffix-middle order) and the stop strings;
    `repo_name` and `file_sep` are the repository-level markers, for families trained on them."""

    prefix: str
    suffix: str
    middle: str
    stop: tuple[str, ...]
    repo_name: str | None = None
    file_sep: str | None = None

    def render(self, prefix: str, suffix: str) -> str:
        return f"{self.prefix}{prefix}{self.suffix}{suffix}{self.middle}"

    def repo_parts(self, files: Sequence[SourceFile], path: str, repo: str) -> RepoParts:
        """What goes before the prefix marker for `files` and the file at the cursor (`path`):
        a head, one part per file, and a tail, each as (text, special) pieces. `special`
        pieces are the template's markers; the others are the project's own text, which must
        not be read as markers."""
        body = [self.file_part(f) for f in files]
        if self.repo_name is None or self.file_sep is None:
            return [], body, []  # no repository format: the files as plain code
        head = [(self.repo_name, True), (f"{repo or 'project'}\n", False)]
        return head, body, [(self.file_sep, True), (f"{path or 'untitled'}\n", False)]

    def file_part(self, file: SourceFile) -> Pieces:
        """One file in the repository format; without one, the file as plain code."""
        if self.repo_name is None or self.file_sep is None:
            return [(as_plain_code(file), False)]
        return [(self.file_sep, True), (f"{file.path}\n{file.text.rstrip()}\n", False)]

    def render_repo(self, files: Sequence[SourceFile], path: str, repo: str) -> str:
        """`repo_parts` as one text, for engines that take the markers as text."""
        if not files:
            return ""
        head, body, tail = self.repo_parts(files, path, repo)
        return "".join(text for part in (head, *body, tail) for text, _ in part)

    def parse(self, text: str) -> tuple[str, str, str] | None:
        """(context, prefix, suffix) of a prompt written in this template, as editors send it
        to a raw completion endpoint; None if `text` is not one."""
        if not text.endswith(self.middle):
            return None
        body = text[: -len(self.middle)]
        start = body.find(self.prefix)
        if start < 0:
            return None
        middle = body.find(self.suffix, start + len(self.prefix))
        if middle < 0:
            return None
        context, prefix = body[:start], body[start + len(self.prefix) : middle]
        return context, prefix, body[middle + len(self.suffix) :]


FIM_TEMPLATES: dict[str, FimTemplate] = {
    "qwen": FimTemplate(
        "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
        stop=("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|im_end|>", "<|fim_prefix|>",
              "<|repo_name|>"),
        repo_name="<|repo_name|>", file_sep="<|file_sep|>",
    ),
    "starcoder": FimTemplate(
        "<fim_prefix>", "<fim_suffix>", "<fim_middle>",
        stop=("<|endoftext|>", "<file_sep>", "<fim_prefix>"),
        repo_name="<repo_name>", file_sep="<file_sep>",
    ),
    "deepseek": FimTemplate(
        "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>",
        stop=("<｜end▁of▁sentence｜>", "<｜fim▁begin｜>"),
    ),
    "codellama": FimTemplate("<PRE> ", " <SUF>", " <MID>", stop=("<EOT>", " <EOT>")),
}  # fmt: skip


def detect_family(is_single_token: Callable[[str], bool]) -> str | None:
    """The first family whose prefix sentinel the tokenizer knows as one token."""
    for family, template in FIM_TEMPLATES.items():
        if is_single_token(template.prefix.strip()):
            return family
    return None
