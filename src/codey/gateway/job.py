"""The one request object: what a dialect's body becomes for the gateway.

Each dialect's request body is a Job (or makes one): it names its service and dialect, says what
is billed and what keys the cache, and runs itself on the services of the model it is routed to.
The gateway knows nothing else of dialects; the dialects know nothing of the policies.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from codey.backends.base import Delta
from codey.config import Service
from codey.errors import InvalidRequest

if TYPE_CHECKING:
    from codey.services import Services

Dialect = Literal["native", "openai", "vertex", "llamacpp"]


@dataclass(frozen=True)
class Answer:
    """What the service produced, rendered, with its usage."""

    body: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    output_text: str


class Job(ABC):
    """One request of a dialect, ready for the gateway."""

    service: ClassVar[Service]
    dialect: ClassVar[Dialect]

    @abstractmethod
    def billed_text(self) -> str:
        """The input characters the request is billed for."""

    def cache_request(self) -> dict[str, Any] | None:
        """The normalised request the cache is keyed on; None: never cached."""
        return None

    def asked_temperature(self) -> float | None:
        """The temperature the caller asked for; None means the service's default."""
        return None

    def asked_model(self) -> str | None:
        """The model name the caller gave; None means the one its service runs on."""
        return None

    @abstractmethod
    async def run(self, services: Services) -> Answer:
        """The whole answer, rendered in the dialect's shape."""

    def run_stream(self, services: Services) -> AsyncIterator[Delta]:
        """The answer token by token; the last delta carries the finish reason and usage."""
        raise InvalidRequest(f"{type(self).__name__} cannot be streamed.")
