"""Principals: who is calling, found from an API key of the config (kept there as SHA-256)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from codey.config import ApiKey, Service, ServiceLimits
from codey.errors import Forbidden, NotFound, Unauthorized

ALL_SERVICES: frozenset[Service] = frozenset(("generation", "chat", "completion"))


@dataclass(frozen=True)
class Principal:
    name: str
    services: frozenset[Service] = ALL_SERVICES
    admin: bool = False
    limits: Mapping[Service, ServiceLimits] = field(default_factory=dict)

    def authorize(self, service: Service) -> None:
        if service not in self.services:
            raise Forbidden(
                f"The key {self.name!r} may not use the {service} service.",
                hint="Ask an administrator to add it to the key's services.",
            )


ANONYMOUS = Principal("anonymous", admin=True)
"""The only principal when no keys are configured (the server then binds to loopback only)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh API key and the SHA-256 to put in the config."""
    key = "codey-" + secrets.token_urlsafe(32)
    return key, hash_key(key)


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key from `Authorization: Bearer`, `x-api-key` or `x-goog-api-key`."""
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or None


class KeyRing:
    """The configured keys, by hash."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._by_hash = {
            k.sha256: Principal(k.name, frozenset(k.services), k.admin, dict(k.limits))
            for k in keys
        }

    @property
    def open(self) -> bool:
        """No keys configured: everyone is the anonymous principal."""
        return not self._by_hash

    def named(self, name: str) -> Principal:
        for principal in self._by_hash.values():
            if principal.name == name:
                return principal
        if self.open and name == ANONYMOUS.name:
            return ANONYMOUS
        raise NotFound(f"No principal named {name!r}.")

    def principal(self, key: str | None) -> Principal:
        if self.open:
            return ANONYMOUS
        if key is None:
            raise Unauthorized(
                "This server needs an API key.",
                hint="Send it as 'Authorization: Bearer KEY', 'x-api-key' or 'x-goog-api-key'.",
            )
        principal = self._by_hash.get(hash_key(key))
        if principal is None:
            raise Unauthorized("The API key is not valid.", hint="Check the key you sent.")
        return principal
