"""Request and response bodies of the native dialect (the original design's field names).

Each request body is the gateway's Job for its route: it translates itself into the service's
request and renders the service's result. Sampling fields left out take the service's defaults
(`[generation]`, `[chat]`, `[completion]` in the settings).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StringConstraints

from codey.api.numbers import WHOLE
from codey.backends.base import Message
from codey.backends.fim import SourceFile
from codey.config import Service
from codey.gateway.job import Answer, Dialect, Job
from codey.services import Services
from codey.services.chat import ChatRequest, ChatResult
from codey.services.completion import MAX_COMPLETIONS, CompletionRequest, CompletionResult
from codey.services.generation import GenerationRequest, GenerationResult

NonBlank = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]
Language = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[\w+#.\- ]+$")]


def _written_as_a_day(value: object) -> object:
    # Without this, pydantic would also read "86400" as a day (a Unix time), which the
    # schema's "format": "date" does not admit.
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_written_as_a_day)]
"""A calendar day as YYYY-MM-DD; 2026-13-45 is none."""


class _Body(BaseModel):
    # false is not 0 nor "2" a number; the integers take 2.0 as JSON Schema does (`WHOLE`)
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _NativeJob(_Body, Job):
    dialect: ClassVar[Dialect] = "native"

    def cache_request(self) -> dict[str, Any] | None:
        return self.model_dump()


class GenerateBody(_NativeJob):
    service: ClassVar[Service] = "generation"

    prompt: NonBlank = Field(description="What the code should do.")
    language: Language = "python"
    max_tokens: Annotated[StrictInt, Field(ge=1, le=32768), WHOLE] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: Annotated[StrictInt, Field(ge=0, le=1000), WHOLE] | None = None
    context: str | None = None
    requirements: list[str] = Field(default_factory=list, max_length=50)

    def billed_text(self) -> str:
        return self.prompt + (self.context or "") + "".join(self.requirements)

    def asked_temperature(self) -> float | None:
        return self.temperature

    async def run(self, services: Services) -> Answer:
        result = await services.generation.generate(self.to_request())
        rendered = GenerateResponse.of(result).model_dump()
        return Answer(rendered, result.prompt_tokens, result.completion_tokens, result.code)

    def to_request(self) -> GenerationRequest:
        return GenerationRequest(
            prompt=self.prompt,
            language=self.language,
            context=self.context,
            requirements=tuple(self.requirements),
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
        )


class UsageStats(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, result: GenerationResult | ChatResult | CompletionResult) -> UsageStats:
        return cls(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            total_tokens=result.tokens_used,
        )


class SyntaxCheck(BaseModel):
    valid: bool | None
    checker: str | None
    error: str | None


class GenerateResponse(BaseModel):
    success: bool = True
    generated_code: str
    language: str
    confidence: float
    syntax: SyntaxCheck
    execution_time_ms: float
    tokens_used: int
    cached: bool = False
    usage_stats: UsageStats

    @classmethod
    def of(cls, result: GenerationResult) -> GenerateResponse:
        return cls(
            generated_code=result.code,
            language=result.language,
            confidence=result.confidence,
            syntax=SyntaxCheck(**vars(result.syntax)),
            execution_time_ms=round(result.elapsed_ms, 1),
            tokens_used=result.tokens_used,
            usage_stats=UsageStats.of(result),
        )


class HistoryMessage(_Body):
    role: Literal["user", "assistant"]
    content: str
    timestamp: str | float | None = None


class ChatBody(_NativeJob):
    service: ClassVar[Service] = "chat"

    message: NonBlank
    conversation_history: list[HistoryMessage] = Field(default_factory=list, max_length=1000)
    language: Language | None = None
    context: str | None = None
    conversation_id: str | None = Field(default=None, max_length=64)
    max_tokens: Annotated[StrictInt, Field(ge=1, le=32768), WHOLE] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)

    def billed_text(self) -> str:
        history = "".join(m.content for m in self.conversation_history)
        return self.message + (self.context or "") + history

    def cache_request(self) -> dict[str, Any] | None:
        return None  # a conversation changes with every turn

    def asked_temperature(self) -> float | None:
        return self.temperature

    async def run(self, services: Services) -> Answer:
        result = await services.chat.chat(self.to_request())
        rendered = ChatResponse.of(result).model_dump()
        return Answer(rendered, result.prompt_tokens, result.completion_tokens, result.response)

    def to_request(self) -> ChatRequest:
        return ChatRequest(
            message=self.message,
            conversation_id=self.conversation_id,
            history=[Message(m.role, m.content) for m in self.conversation_history],
            language=self.language,
            context=self.context,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        )


class ChatResponse(BaseModel):
    success: bool = True
    response: str
    conversation_id: str
    confidence: float
    execution_time_ms: float
    tokens_used: int
    history_messages: int
    cached: bool = False
    usage_stats: UsageStats

    @classmethod
    def of(cls, result: ChatResult) -> ChatResponse:
        return cls(
            response=result.response,
            conversation_id=result.conversation_id,
            confidence=result.confidence,
            execution_time_ms=round(result.elapsed_ms, 1),
            tokens_used=result.tokens_used,
            history_messages=result.history_messages,
            usage_stats=UsageStats.of(result),
        )


class FileIn(_Body):
    path: str = Field(min_length=1, max_length=1000)
    text: str


class CompleteBody(_NativeJob):
    # The cursor needs code on at least one side of it.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"prefix": {"pattern": r"\S"}}},
                {"required": ["suffix"], "properties": {"suffix": {"pattern": r"\S"}}},
            ]
        },
    )
    service: ClassVar[Service] = "completion"

    prefix: str
    suffix: str = ""
    language: Language = "python"
    max_completions: Annotated[StrictInt, Field(ge=1, le=MAX_COMPLETIONS), WHOLE] = 3
    max_tokens: Annotated[StrictInt, Field(ge=1, le=512), WHOLE] | None = None
    context: str | None = Field(
        default=None,
        description="Free text the model reads right before the prefix (a note, a spec), kept "
        "whole: only the code is cut to `completion.prefix_tokens`.",
    )
    files: list[FileIn] = Field(
        default_factory=list,
        max_length=64,
        description="Other files of the project, least relevant first: shown to the model in "
        "its repository format within `completion.context_tokens`, cached between keystrokes.",
    )
    path: str | None = Field(
        default=None, max_length=1000, description="The file at the cursor, within the project."
    )
    session: str | None = Field(
        default=None,
        max_length=200,
        description="The editor or document typing (any id): the engine keeps its prompt "
        "cached between keystrokes. Without it, the slot whose cached prompt matches best.",
    )

    def billed_text(self) -> str:
        files = "".join(f.text for f in self.files)
        return self.prefix + self.suffix + (self.context or "") + files

    def cache_request(self) -> dict[str, Any] | None:
        return self.model_dump(exclude={"session"})  # the same code gets the same answer

    async def run(self, services: Services) -> Answer:
        result = await services.completion.complete(self.to_request())
        rendered = CompleteResponse.of(result).model_dump()
        text = "".join(s.completion for s in result.suggestions)
        return Answer(rendered, result.prompt_tokens, result.completion_tokens, text)

    def to_request(self) -> CompletionRequest:
        return CompletionRequest(
            prefix=self.prefix,
            suffix=self.suffix,
            language=self.language,
            max_completions=self.max_completions,
            max_tokens=self.max_tokens,
            context=self.context,
            files=tuple(SourceFile(f.path, f.text) for f in self.files),
            path=self.path or "",
            session=self.session,
        )


class SuggestionOut(BaseModel):
    completion: str
    confidence: float
    type: str


class CompleteResponse(BaseModel):
    success: bool = True
    suggestions: list[SuggestionOut]
    execution_time_ms: float
    tokens_used: int
    cached: bool = False
    usage_stats: UsageStats

    @classmethod
    def of(cls, result: CompletionResult) -> CompleteResponse:
        return cls(
            suggestions=[
                SuggestionOut(completion=s.completion, confidence=s.confidence, type=s.kind)
                for s in result.suggestions
            ],
            execution_time_ms=round(result.elapsed_ms, 1),
            tokens_used=result.tokens_used,
            usage_stats=UsageStats.of(result),
        )
