"""Code generation: prompt + context + requirements -> one complete, checked piece of code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

from codey.backends.base import (
    Backend,
    ChatPrompt,
    Delta,
    Message,
    SamplingParams,
    span_confidence,
)
from codey.config import GenerationSettings, SamplingDefaults
from codey.errors import InvalidRequest
from codey.services.code_text import SyntaxReport, check_syntax, extract_code
from codey.services.sampling import Sampling


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    language: str = "python"
    context: str | None = None
    requirements: Sequence[str] = ()
    max_tokens: int | None = None
    """None, here and below, leaves the value to the service's defaults (`[generation]`)."""
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None


@dataclass
class GenerationResult:
    code: str
    language: str
    confidence: float
    syntax: SyntaxReport
    prompt_tokens: int
    completion_tokens: int
    elapsed_ms: float
    finish_reason: str
    answer: str = field(repr=False)
    """The model's whole answer, code and prose."""

    @property
    def tokens_used(self) -> int:
        return self.prompt_tokens + self.completion_tokens


CLOSING_FENCE = "\n```\n"
SYSTEM_PROMPT = (
    "You are an expert {language}programmer. Write complete, working, idiomatic code that "
    "does what the user asks: whole functions or classes with their imports, no placeholders. "
    "Answer with the code in one fenced ```{tag} block; keep any explanation short and after "
    "the code."
)


def build_messages(request: GenerationRequest) -> list[Message]:
    """The chat turns that ask the model for the code."""
    parts = [request.prompt.strip()]
    if request.context and request.context.strip():
        parts.append(f"Context:\n```\n{request.context.strip()}\n```")
    requirements = [r.strip() for r in request.requirements if r.strip()]
    if requirements:
        parts.append("Requirements:\n" + "\n".join(f"- {r}" for r in requirements))
    return [
        Message(
            "system",
            SYSTEM_PROMPT.format(
                language=f"{request.language} " if request.language else "",
                tag=request.language or "",
            ),
        ),
        Message("user", "\n\n".join(parts)),
    ]


class GenerationService:
    def __init__(self, backend: Backend, defaults: SamplingDefaults | None = None) -> None:
        self.backend = backend
        self.defaults = defaults or GenerationSettings()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        started = time.perf_counter()
        prompt, params = self._prepare(request)
        generation = await self.backend.generate(prompt, params)
        choice = generation.choices[0]
        extracted = extract_code(choice.text, request.language)
        syntax = await asyncio.to_thread(check_syntax, extracted.code, request.language)
        confidence = span_confidence(choice.tokens, extracted.spans)
        return GenerationResult(
            code=extracted.code,
            language=request.language,
            confidence=round(confidence, 4),
            syntax=syntax,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            finish_reason=choice.finish_reason,
            answer=choice.text,
        )

    async def candidates(self, request: GenerationRequest, n: int) -> list[GenerationResult]:
        """`n` answers to one request, the i-th sampled with seed i (or the request's seed + i)."""
        first = request.seed or 0
        return [await self.generate(replace(request, seed=first + i)) for i in range(n)]

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """The model's whole answer (prose and fenced code), token by token."""
        prompt, params = self._prepare(request)
        return self.backend.stream(prompt, params)

    def _prepare(self, request: GenerationRequest) -> tuple[ChatPrompt, SamplingParams]:
        if not request.prompt.strip():
            raise InvalidRequest("The prompt is empty.", hint="Describe the code to generate.")
        asked = Sampling(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=request.top_k,
            seed=request.seed,
            # The code ends where its fence closes; prose after it would only cost time.
            stop=(CLOSING_FENCE,) if request.language else (),
        )
        return ChatPrompt(build_messages(request)), asked.resolve(self.defaults)
