"""The requests a benchmark sends: the original design's five generation prompts, chat turns,
and completions at several prefix lengths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GENERATION_PROMPTS = (
    "Create a REST API endpoint for user authentication",
    "Implement a binary search tree in Python",
    "Write a function to parse JSON data",
    "Create a database connection pool",
    "Implement rate limiting middleware",
)
CHAT_TURNS = (
    "What is the difference between a list and a tuple in Python?",
    "When should I use a generator instead of a list?",
    "How do I make a class usable in a with statement?",
    "What does the GIL mean for threads?",
    "How do I profile a slow function?",
)
PREFIX_LENGTHS = (200, 600, 1200)
_SOURCE = '''"""Orders: parsing, validation and totals."""

from __future__ import annotations

import dataclasses
import decimal
from collections import Counter


@dataclasses.dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    price: decimal.Decimal

    @property
    def total(self) -> decimal.Decimal:
        return self.price * self.quantity


class OrderError(ValueError):
    """An order that cannot be accepted."""


def parse_line(text: str) -> Line:
    sku, quantity, price = (part.strip() for part in text.split(","))
    if not sku:
        raise OrderError("empty sku")
    return Line(sku, int(quantity), decimal.Decimal(price))


def parse_order(text: str) -> list[Line]:
    lines = [parse_line(row) for row in text.splitlines() if row.strip()]
    if not lines:
        raise OrderError("empty order")
    return lines


def order_total(lines: list[Line]) -> decimal.Decimal:
    return sum((line.total for line in lines), decimal.Decimal(0))


def most_ordered(lines: list[Line], n: int = 3) -> list[str]:
    counts = Counter()
    for line in lines:
        counts[line.sku] += line.quantity
    return [sku for sku, _ in counts.most_common(n)]


def validate(lines: list[Line]) -> None:
    """Refuse negative quantities and prices, and duplicate skus."""
'''


@dataclass(frozen=True)
class Job:
    service: str
    path: str
    body: dict[str, Any]
    label: str


def jobs(requests: int, max_tokens: int) -> list[Job]:
    """`requests` jobs per service, cycling through the prompts."""
    out: list[Job] = []
    for i in range(requests):
        prompt = GENERATION_PROMPTS[i % len(GENERATION_PROMPTS)]
        out.append(
            Job(
                "generation",
                "/api/v1/codey/generate",
                {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0},
                prompt,
            )
        )
        turn = CHAT_TURNS[i % len(CHAT_TURNS)]
        out.append(
            Job(
                "chat",
                "/api/v1/codey/chat",
                {"message": turn, "max_tokens": max_tokens, "temperature": 0},
                turn,
            )
        )
        length = PREFIX_LENGTHS[i % len(PREFIX_LENGTHS)]
        prefix = _SOURCE[-length:] + "\n    "
        out.append(
            Job(
                "completion",
                "/api/v1/codey/complete",
                {
                    "prefix": prefix,
                    "suffix": "\n",
                    "max_completions": 1,
                    "max_tokens": min(max_tokens, 64),
                },
                f"{length}-char prefix",
            )
        )
    return out
