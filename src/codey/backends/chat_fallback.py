"""Raw completion and fill-in-the-middle asked of an engine that only chats.

Gemini on Vertex AI, and OpenAI-compatible servers whose model has no fill-in-the-middle tokens
(the `infill = "chat"` setting of an openai deployment), take chat turns only. These functions
turn the other two prompt shapes into one user turn that asks for exactly the missing text, so
that the completion service can treat the answer as it treats a FIM model's: code to insert,
nothing around it. Models still wrap code in a Markdown fence now and then; `strip_fences`
takes it off. Pure functions, no I/O: the backends call them before and after the engine.
"""

from __future__ import annotations

import re

from codey.backends.base import ChatPrompt, InfillPrompt, Message, TextPrompt, TokenLogprob

# Delimiters that code rarely contains, so the model can tell the two sides from the request.
# _END follows the code directly, so whitespace at the cursor (an indent) stays visible.
_BEFORE = "<<<CODE BEFORE THE CURSOR>>>"
_AFTER = "<<<CODE AFTER THE CURSOR>>>"
_END = "<<<END>>>"
_TEXT = "<<<TEXT>>>"

INFILL_INSTRUCTIONS = (
    "You are a code completion engine. You are given the code before and the code after the "
    "cursor of a file being edited. Answer with ONLY the code that goes at the cursor, so that "
    "before + your answer + after is correct, complete code. Do not repeat any of the code "
    "before or after the cursor, do not explain, and do not use Markdown fences. Keep the "
    "indentation the surrounding code needs. If nothing needs to be inserted, answer with "
    "nothing."
)

CONTINUE_INSTRUCTIONS = (
    "You are a text completion engine. Continue the text below exactly from where it stops, "
    "mid-word or mid-line if it stops there. Answer with ONLY the continuation: do not repeat "
    "the text, do not explain, and do not use Markdown fences."
)

_FENCE = re.compile(r"^\s*```[^\n`]*\n(?P<body>.*?)\n?```\s*$", re.DOTALL)


def infill_as_chat(prompt: InfillPrompt) -> ChatPrompt:
    """A chat turn asking for the code between `prompt.prefix` and `prompt.suffix`."""
    preamble = prompt.preamble(None)
    context = f"Other code of the project:\n{preamble}\n\n" if preamble else ""
    request = (
        f"{context}{_BEFORE}\n{prompt.before_cursor}{_END}\n"
        f"{_AFTER}\n{prompt.suffix}{_END}\n"
        "Answer with only the code that goes at the cursor, between the two parts above."
    )
    return ChatPrompt(messages=(Message("system", INFILL_INSTRUCTIONS), Message("user", request)))


def continue_as_chat(prompt: TextPrompt) -> ChatPrompt:
    """A chat turn asking for the continuation of `prompt.text`, and only that."""
    request = f"{_TEXT}\n{prompt.text}{_END}\nContinue the text exactly where it stops."
    return ChatPrompt(messages=(Message("system", CONTINUE_INSTRUCTIONS), Message("user", request)))


def strip_fences(text: str) -> str:
    """The body of a Markdown code fence that wraps the whole answer; other text as is."""
    match = _FENCE.match(text)
    return match.group("body") if match else text


def unfence(text: str, tokens: list[TokenLogprob]) -> tuple[str, list[TokenLogprob]]:
    """An answer without its fence; its tokens only while they still spell the text."""
    stripped = strip_fences(text)
    return (text, tokens) if stripped == text else (stripped, [])
