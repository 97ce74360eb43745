"""The one exception tree of codey, with the HTTP status of each kind; each dialect maps it to
its own error object in one place (codey.api.errors).

CodeyError
├── ConfigError               settings that cannot work
├── ModelError                the model file cannot be used
│   ├── ModelPartsMissing     registry parts not installed
│   ├── ModelCorrupt          wrong size or SHA-256, not a GGUF file
│   └── DiskFull              no room to assemble the model
├── InvalidRequest            the caller's input is wrong (400)
│   └── ContextOverflow       the prompt does not fit the context window
├── NotFound                  an id that does not exist (404)
├── Unauthorized              no API key, or an unknown one (401)
├── Forbidden                 the key may not use this service (403)
├── RateLimited               over a daily quota or a per-minute limit (429)
├── Overloaded                the engine queue is full (503)
│   └── EngineUnavailable     the engine process is starting, restarting or given up on (503)
├── Cancelled                 the caller went away
└── BackendError              the engine failed (502)
    ├── EngineCrashed         the engine process died with the request in hand (503)
    ├── UpstreamError         a deployment failed; `retryable` says if another try may help
    │   └── UpstreamTimeout   no first token or no answer in time (504)
    └── NoDeployment          every deployment of a model is busy or its breaker open (503)
"""

from __future__ import annotations

from typing import ClassVar


class CodeyError(Exception):
    """Base of every error codey raises on purpose; `hint` says what to do next."""

    status: ClassVar[int] = 500
    kind: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class ConfigError(CodeyError):
    """Settings that cannot work."""

    status: ClassVar[int] = 500
    kind: ClassVar[str] = "config_error"


class ModelError(CodeyError):
    """The model file cannot be used."""

    status: ClassVar[int] = 500
    kind: ClassVar[str] = "model_unavailable"


class ModelPartsMissing(ModelError):
    """The registry packages that carry the embedded model are not installed."""


class ModelCorrupt(ModelError):
    """A model file with the wrong size or hash, or not a GGUF file."""


class DiskFull(ModelError):
    """Not enough free space to assemble the model."""


class InvalidRequest(CodeyError):
    """The caller's input is wrong."""

    status: ClassVar[int] = 400
    kind: ClassVar[str] = "invalid_request"


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


class Unauthorized(CodeyError):
    """No API key, or one that codey does not know."""

    status: ClassVar[int] = 401
    kind: ClassVar[str] = "unauthorized"


class Forbidden(CodeyError):
    """The API key may not use this service."""

    status: ClassVar[int] = 403
    kind: ClassVar[str] = "forbidden"


class RateLimited(CodeyError):
    """Over a daily quota or a per-minute limit; `retry_after` is whole seconds to wait."""

    status: ClassVar[int] = 429
    kind: ClassVar[str] = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, hint=f"Retry after {retry_after} s.")
        self.retry_after = retry_after


class NotFound(CodeyError):
    """An id that does not exist."""

    status: ClassVar[int] = 404
    kind: ClassVar[str] = "not_found"


class Overloaded(CodeyError):
    """The engine queue is full."""

    status: ClassVar[int] = 503
    kind: ClassVar[str] = "overloaded"

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="Retry in a few seconds.")


class EngineUnavailable(Overloaded):
    """The engine process is not ready: starting, restarting after a crash, or stopped after
    crashing again and again; `retry_after` is whole seconds until it may be back."""

    kind: ClassVar[str] = "engine_unavailable"

    def __init__(self, message: str, *, retry_after: int, hint: str | None = None) -> None:
        CodeyError.__init__(self, message, hint=hint or f"Retry after {retry_after} s.")
        self.retry_after = retry_after


class Cancelled(CodeyError):
    """The caller went away before the answer was finished."""

    status: ClassVar[int] = 499
    kind: ClassVar[str] = "cancelled"


class BackendError(CodeyError):
    """The engine failed to produce an answer."""

    status: ClassVar[int] = 502
    kind: ClassVar[str] = "backend_error"


class EngineCrashed(BackendError):
    """The engine process died (a native crash, the OOM killer) while answering; it restarts by
    itself. Never retried: the request in hand may be what crashed it."""

    status: ClassVar[int] = 503
    kind: ClassVar[str] = "engine_crashed"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, hint=f"Retry after {retry_after} s.")
        self.retry_after = retry_after


class UpstreamError(BackendError):
    """A deployment failed: connection refused or dropped, 429, 5xx, or an answer that makes
    no sense. `retry_after` is the seconds the upstream asked for, if it did."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.upstream_status = upstream_status


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After (or retryDelay) value in seconds; None for a date or nonsense, which
    backoff covers."""
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


class UpstreamTimeout(UpstreamError):
    """No first token, or no answer, within the configured time."""

    status: ClassVar[int] = 504
    kind: ClassVar[str] = "upstream_timeout"


class NoDeployment(BackendError):
    """Every deployment of a model (and of its fallbacks) is at capacity or has its breaker
    open; `retry_after` is whole seconds until one may take a call."""

    status: ClassVar[int] = 503
    kind: ClassVar[str] = "no_deployment"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, hint=f"Retry after {retry_after} s.")
        self.retry_after = retry_after
