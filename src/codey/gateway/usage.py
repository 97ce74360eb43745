"""Requests and tokens per service since the process started."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

Service = Literal["generation", "chat", "completion"]
SERVICES: tuple[Service, ...] = ("generation", "chat", "completion")


@dataclass
class ServiceUsage:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class UsageTally:
    """Counts per service; thread-safe, in memory."""

    started_at: float = field(default_factory=time.time)
    services: dict[str, ServiceUsage] = field(
        default_factory=lambda: {s: ServiceUsage() for s in SERVICES}
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(
        self, service: Service, *, ok: bool, prompt_tokens: int = 0, completion_tokens: int = 0
    ) -> None:
        with self._lock:
            usage = self.services[service]
            usage.requests += 1
            usage.errors += 0 if ok else 1
            usage.prompt_tokens += prompt_tokens
            usage.completion_tokens += completion_tokens

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "since": self.started_at,
                "services": {name: asdict(u) for name, u in self.services.items()},
            }
