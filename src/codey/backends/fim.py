"""Fill-in-the-middle prompt templates, one row per model family.

A family is recognised by its sentinel tokens: if the tokenizer turns a template's prefix marker
into a single special token, the model was trained with that template.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FimTemplate:
    """Sentinels around prefix and suffix (prefix-suffix-middle order) and the stop strings."""

    prefix: str
    suffix: str
    middle: str
    stop: tuple[str, ...]

    def render(self, prefix: str, suffix: str) -> str:
        return f"{self.prefix}{prefix}{self.suffix}{suffix}{self.middle}"

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
    ),
    "starcoder": FimTemplate(
        "<fim_prefix>", "<fim_suffix>", "<fim_middle>",
        stop=("<|endoftext|>", "<file_sep>", "<fim_prefix>"),
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
