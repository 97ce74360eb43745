"""OpenAI's chat completions and completions bodies, as much as codey serves of them.

Each request body is the gateway's Job for its route. Sampling fields left out take the
service's defaults in the settings, as vLLM takes the model's generation config.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, StrictInt, model_validator
from pydantic.json_schema import JsonDict, JsonSchemaValue
from pydantic_core import CoreSchema

from codey.api.numbers import WHOLE, Integer
from codey.backends.base import Choice, Delta, FinishReason, Generation, Message
from codey.config import Service
from codey.errors import InvalidRequest
from codey.gateway.job import Answer, Dialect, Job
from codey.services import Services
from codey.services.sampling import Sampling

MAX_N = 8


class _Body(BaseModel):
    # Clients send fields codey has no use for (user, presence_penalty, ...); ignore them.
    # false is not 0 nor "2" a number; the integers take 2.0 as JSON Schema does (`WHOLE`)
    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        """OpenAI's API reads `"n": null` as n left out, and some clients send it so."""
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """Every field that may be left out may be null too, as documented."""
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        required = set(target.get("required", ()))
        for name, field in target.get("properties", {}).items():
            branches = field.get("anyOf", [field])
            if name in required or any(b.get("type") == "null" for b in branches):
                continue
            outer = {k: field.pop(k) for k in ("title", "description", "default") if k in field}
            target["properties"][name] = {**outer, "anyOf": [field, {"type": "null"}]}
        return schema


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessageIn(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def to_message(self) -> Message:
        text = self.content if isinstance(self.content, str) else ""
        if isinstance(self.content, list):
            text = "".join(part.text for part in self.content)
        role = "system" if self.role == "developer" else self.role
        return Message(role, text)


class TokenizeRequest(_Body):
    """vLLM's /tokenize body: a prompt, or chat messages rendered through the template."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
                {"required": ["messages"], "properties": {"messages": {"type": "array"}}},
            ]
        },
    )

    model: str = Field(min_length=1)
    prompt: str | None = None
    messages: list[ChatMessageIn] | None = Field(default=None, min_length=1)


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int


class StreamOptions(_Body):
    include_usage: bool = False


Stop = str | Annotated[list[str], Field(max_length=16)] | None
"""Up to 16 stop strings: editors send a template's worth (Continue sends ten or more)."""


# A stream carries one choice (null is left out: no stream, one choice).
_ONE_STREAMED_CHOICE: JsonDict = {
    "anyOf": [
        {"properties": {"stream": {"enum": [False, None]}}},
        {"properties": {"n": {"enum": [1, None]}}},
    ]
}


class _Sampling(_Body, Job):
    model_config = ConfigDict(json_schema_extra={"allOf": [_ONE_STREAMED_CHOICE]})
    dialect: ClassVar[Dialect] = "openai"

    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: Annotated[StrictInt, Field(ge=1, le=MAX_N), WHOLE] = 1
    stop: Stop = None
    seed: Integer | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def asked_model(self) -> str | None:
        return self.model

    def asked_temperature(self) -> float | None:
        return self.temperature

    def cache_request(self) -> dict[str, Any] | None:
        return self.model_dump()

    def _sampling(self, max_tokens: int | None, logprobs: bool, top_logprobs: int) -> Sampling:
        return Sampling(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stops,
            seed=self.seed,
            n=self.n,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
        )

    def _one_choice(self) -> None:
        if self.n != 1:
            raise InvalidRequest("Streaming returns one choice; send n = 1 or stream = false.")


# The chat service answers only a conversation with something said in a user turn.
_SPOKEN_USER_TURN: JsonDict = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"const": "user"},
        "content": {
            "anyOf": [
                {"type": "string", "pattern": r"\S"},
                {
                    "type": "array",
                    "contains": {"required": ["text"], "properties": {"text": {"pattern": r"\S"}}},
                },
            ]
        },
    },
}


class ChatCompletionRequest(_Sampling):
    service: ClassVar[Service] = "chat"

    messages: list[ChatMessageIn] = Field(
        min_length=1, json_schema_extra={"contains": _SPOKEN_USER_TURN}
    )
    max_tokens: Annotated[StrictInt, Field(ge=1), WHOLE] | None = None
    max_completion_tokens: Annotated[StrictInt, Field(ge=1), WHOLE] | None = None
    logprobs: bool = False
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20), WHOLE] | None = None

    def to_messages(self) -> list[Message]:
        return [m.to_message() for m in self.messages]

    def to_sampling(self) -> Sampling:
        top = (self.top_logprobs or 0) if self.logprobs else 0
        return self._sampling(self.max_completion_tokens or self.max_tokens, self.logprobs, top)

    def billed_text(self) -> str:
        return "".join(m.content for m in self.to_messages())

    async def run(self, services: Services) -> Answer:
        generation = await services.chat.reply(self.to_messages(), self.to_sampling())
        rendered = ChatCompletion.of(self.model, generation, logprobs=self.logprobs)
        return _answer(rendered.model_dump(), generation)

    def run_stream(self, services: Services) -> AsyncIterator[Delta]:
        self._one_choice()
        return services.chat.stream_reply(self.to_messages(), self.to_sampling())


# The completion service needs text in the prompt (a string, or a list's one string), or a
# suffix with text to fill before.
_SOME_TEXT: JsonDict = {
    "anyOf": [
        {"properties": {"prompt": {"pattern": r"\S", "items": {"pattern": r"\S"}}}},
        {"required": ["suffix"], "properties": {"suffix": {"type": "string", "pattern": r"\S"}}},
    ]
}


class CompletionRequest(_Sampling):
    model_config = ConfigDict(json_schema_extra={"allOf": [_ONE_STREAMED_CHOICE, _SOME_TEXT]})
    service: ClassVar[Service] = "completion"

    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    suffix: str | None = None
    max_tokens: Annotated[StrictInt, Field(ge=1), WHOLE] | None = None
    logprobs: Annotated[StrictInt, Field(ge=0, le=5), WHOLE] | None = None
    echo: bool = False
    user: str | None = Field(
        default=None,
        max_length=200,
        description="The end user (or editor) asking: the engine keeps their prompt cached.",
    )

    postprocess: bool | None = Field(
        default=None,
        description="codey: cut a fill-in-the-middle answer to the code that fits the cursor, "
        "as native suggestions are (unset: the `completion.postprocess_raw` setting).",
    )

    def cache_request(self) -> dict[str, Any] | None:
        return self.model_dump(exclude={"user"})  # the same prompt gets the same answer

    def shaped(self, services: Services) -> bool:
        asked = self.postprocess
        return services.completion.defaults.postprocess_raw if asked is None else asked

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def to_sampling(self) -> Sampling:
        asked = self.logprobs is not None
        sampling = self._sampling(self.max_tokens, asked, self.logprobs or 0)
        return replace(sampling, session=self.user)

    def billed_text(self) -> str:
        return self.prompt_text + (self.suffix or "")

    async def run(self, services: Services) -> Answer:
        generation = await services.completion.raw(
            self.prompt_text, self.suffix, self.to_sampling(), shaped=self.shaped(services)
        )
        echo = self.prompt_text if self.echo else ""
        rendered = Completion.of(self.model, generation, echo, logprobs=self.logprobs is not None)
        return _answer(rendered.model_dump(), generation)

    def run_stream(self, services: Services) -> AsyncIterator[Delta]:
        self._one_choice()
        return services.completion.stream_raw(
            self.prompt_text, self.suffix, self.to_sampling(), shaped=self.shaped(services)
        )


def _answer(rendered: dict[str, Any], generation: Generation) -> Answer:
    text = "".join(c.text for c in generation.choices)
    return Answer(rendered, generation.prompt_tokens, generation.completion_tokens, text)


# Responses -------------------------------------------------------------------------------


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, generation: Generation) -> Usage:
        return cls(
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            total_tokens=generation.total_tokens,
        )


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut]


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage

    @classmethod
    def of(cls, model: str, generation: Generation, *, logprobs: bool) -> ChatCompletion:
        return cls(
            id=new_id("chatcmpl"),
            created=now(),
            model=model,
            choices=[
                ChatChoice(
                    index=i,
                    message=ChatMessageOut(content=choice.text),
                    logprobs=chat_logprobs(choice) if logprobs else None,
                    finish_reason=choice.finish_reason,
                )
                for i, choice in enumerate(generation.choices)
            ],
            usage=Usage.of(generation),
        )


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    """null where not known, as OpenAI's legacy API gives for an echoed prompt's first token."""
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: FinishReason


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage

    @classmethod
    def of(cls, model: str, generation: Generation, echo: str, *, logprobs: bool) -> Completion:
        return cls(
            id=new_id("cmpl"),
            created=now(),
            model=model,
            choices=[
                CompletionChoice(
                    index=i,
                    text=echo + choice.text,
                    logprobs=completion_logprobs(choice, len(echo)) if logprobs else None,
                    finish_reason=choice.finish_reason,
                )
                for i, choice in enumerate(generation.choices)
            ],
            usage=Usage.of(generation),
        )


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def chat_logprobs(choice: Choice) -> ChoiceLogprobs:
    return ChoiceLogprobs(
        content=[
            TokenLogprobOut(
                token=t.text,
                logprob=t.logprob,
                bytes=list(t.text.encode()),
                top_logprobs=[
                    TopLogprob(token=s, logprob=lp, bytes=list(s.encode())) for s, lp in t.top
                ],
            )
            for t in choice.tokens
            if t.logprob is not None  # each one, when the request asked for them
        ]
    )


def completion_logprobs(choice: Choice, start: int = 0) -> CompletionLogprobs:
    offsets, offset = [], start
    for t in choice.tokens:
        offsets.append(offset)
        offset += len(t.text)
    return CompletionLogprobs(
        tokens=[t.text for t in choice.tokens],
        token_logprobs=[t.logprob for t in choice.tokens],
        top_logprobs=[dict(t.top) for t in choice.tokens],
        text_offset=offsets,
    )
