"""The one exception tree of codey. Each dialect maps it to its own error object in one place.

CodeyError
├── ConfigError               settings that cannot work
├── ModelError                the model file cannot be used
│   ├── ModelPartsMissing     registry parts not installed
│   ├── ModelCorrupt          wrong size or SHA-256, not a GGUF file
│   └── DiskFull              no room to assemble the model
├── InvalidRequest            the caller's input is wrong (400)
│   └── ContextOverflow       the prompt does not fit the context window
├── NotFound                  an id that does not exist (404)
├── Overloaded                the engine queue is full (503)
├── Cancelled                 the caller went away
└── BackendError              the engine failed (502)
"""

from __future__ import annotations


class CodeyError(Exception):
    """Base of every error codey raises on purpose; `hint` says what to do next."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class ConfigError(CodeyError):
    """Settings that cannot work."""


class ModelError(CodeyError):
    """The model file cannot be used."""


class ModelPartsMissing(ModelError):
    """The registry packages that carry the embedded model are not installed."""


class ModelCorrupt(ModelError):
    """A model file with the wrong size or hash, or not a GGUF file."""


class DiskFull(ModelError):
    """Not enough free space to assemble the model."""


class InvalidRequest(CodeyError):
    """The caller's input is wrong."""


class ContextOverflow(InvalidRequest):
    """The prompt and the room for the answer do not fit the context window."""

    def __init__(self, prompt_tokens: int, max_tokens: int, context_length: int) -> None:
        super().__init__(
            f"The prompt is {prompt_tokens} tokens and asks for up to {max_tokens} more, "
            f"but the model's context window is {context_length} tokens.",
            hint="Shorten the prompt or lower max_tokens.",
        )
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context_length = context_length


class NotFound(CodeyError):
    """An id that does not exist."""


class Overloaded(CodeyError):
    """The engine queue is full."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="Retry in a few seconds.")


class Cancelled(CodeyError):
    """The caller went away before the answer was finished."""


class BackendError(CodeyError):
    """The engine failed to produce an answer."""
