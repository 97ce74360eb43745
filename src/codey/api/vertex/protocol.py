"""Vertex AI Codey request and response shapes (code-bison, codechat-bison, code-gecko), and
the jobs they become: one per model family.

Google's own clients send integers as floats (64.0), `maxDecodeSteps` for `maxOutputTokens`, and,
for streaming, every value wrapped as a Tensor ({"stringVal": ["..."]}); all are accepted.
Parameters left out take the service's defaults, within Codey's published output limits.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    WithJsonSchema,
)

from codey.api.numbers import WHOLE, Integer, Number
from codey.backends.base import Delta, Message
from codey.config import SamplingDefaults, Service
from codey.errors import InvalidRequest
from codey.gateway.job import Answer, Dialect, Job
from codey.gateway.pricing import billable_characters
from codey.services import Services
from codey.services.chat import system_prompt
from codey.services.completion import CompletionRequest
from codey.services.generation import GenerationRequest
from codey.services.sampling import Sampling

ModelFamily = Literal["code-bison", "codechat-bison", "code-gecko"]

# Codey's published limits for these model names.
MAX_OUTPUT_TOKENS: dict[ModelFamily, int] = {
    "code-bison": 1024, "codechat-bison": 1024, "code-gecko": 64,
}  # fmt: skip
MAX_CANDIDATES = 4
INSTANCE_SCHEMAS: dict[ModelFamily, str] = {
    "code-bison": "code_generation_1.0.0.yaml",
    "code-gecko": "code_generation_1.0.0.yaml",
    "codechat-bison": "codechat_generation_1.0.0.yaml",
}


def family_of(model: str) -> ModelFamily | None:
    """code-bison@002, code-bison-32k, codechat-bison@latest, code-gecko ... -> family."""
    name = model.split("@", 1)[0]
    for family in ("codechat-bison", "code-bison", "code-gecko"):
        if name == family or name.startswith(family + "-"):
            return family  # type: ignore[return-value]
    return None


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, allow_inf_nan=False)


class Parameters(_Body):
    # Numbers as their schema says: 64.0 is an integer, "2" and true are no numbers.
    temperature: Number | None = Field(default=None, ge=0.0, le=2.0)
    max_output_tokens: Annotated[StrictInt, Field(ge=1), WHOLE] | None = Field(
        default=None,
        validation_alias=AliasChoices("maxOutputTokens", "maxDecodeSteps", "max_output_tokens"),
    )
    candidate_count: Annotated[StrictInt, Field(ge=1, le=MAX_CANDIDATES), WHOLE] = Field(
        default=1, validation_alias=AliasChoices("candidateCount")
    )
    top_p: Number | None = Field(default=None, gt=0.0, le=1.0, validation_alias="topP")
    top_k: Annotated[StrictInt, Field(ge=1, le=40), WHOLE] | None = Field(
        default=None, validation_alias="topK"
    )
    stop_sequences: list[str] = Field(
        default_factory=list, max_length=16, validation_alias="stopSequences"
    )


class CodeInstance(_Body):
    """code-bison and code-gecko."""

    prefix: str
    suffix: str | None = None


class ChatAuthorMessage(_Body):
    author: str | None = None
    """Left out by some Codey clients: the turns then alternate, ending with the user's."""
    content: str


class ExampleText(_Body):
    content: str


class ChatExample(_Body):
    input: ExampleText
    output: ExampleText


class ChatInstance(_Body):
    """codechat-bison."""

    context: str | None = None
    examples: list[ChatExample] = Field(default_factory=list)
    messages: list[ChatAuthorMessage] = Field(min_length=1)

    def to_messages(self, system: str) -> list[Message]:
        turns = [Message("system", system)]
        for example in self.examples:
            turns += [
                Message("user", example.input.content),
                Message("assistant", example.output.content),
            ]
        for message, author in zip(self.messages, self.authors(), strict=True):
            turns.append(Message("user" if author == "user" else "assistant", message.content))
        return turns

    def authors(self) -> list[str]:
        """Each message's author; one left out is the user's if an even number of turns
        follows it, the model's otherwise."""
        last = len(self.messages) - 1
        return [
            m.author or ("user" if (last - i) % 2 == 0 else "bot")
            for i, m in enumerate(self.messages)
        ]


class PredictRequest(_Body):
    instances: list[dict[str, Any]] = Field(min_length=1, max_length=1)
    parameters: Parameters = Field(default_factory=Parameters)


def token_metadata(
    prompt_tokens: int, completion_tokens: int, text_in: str, text_out: str
) -> dict[str, Any]:
    return {
        "tokenMetadata": {
            "inputTokenCount": {
                "totalTokens": prompt_tokens,
                "totalBillableCharacters": billable_characters(text_in),
            },
            "outputTokenCount": {
                "totalTokens": completion_tokens,
                "totalBillableCharacters": billable_characters(text_out),
            },
        }
    }


SAFETY = {"categories": [], "blocked": False, "scores": []}
CITATIONS: dict[str, list[Any]] = {"citations": []}


def text_prediction(content: str, score: float | None = None) -> dict[str, Any]:
    prediction: dict[str, Any] = {
        "content": content,
        "citationMetadata": CITATIONS,
        "safetyAttributes": SAFETY,
    }
    if score is not None:
        prediction["score"] = score
    return prediction


def chat_prediction(contents: list[str]) -> dict[str, Any]:
    return {
        "candidates": [{"author": "bot", "content": c} for c in contents],
        "citationMetadata": [CITATIONS for _ in contents],
        "safetyAttributes": [SAFETY for _ in contents],
    }


# Streaming: values travel wrapped as Tensors ----------------------------------------------


_DIGITS = r"^-?[0-9]+$"


def _int_text(value: object) -> object:
    return int(value) if isinstance(value, str) and re.match(_DIGITS, value) else value


Int64 = Annotated[
    Integer,
    BeforeValidator(_int_text),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "pattern": _DIGITS}]}),
]
"""An integer, also as proto3's JSON writes a 64-bit one: "64"."""


class Tensor(BaseModel):
    """A value in a Tensor's JSON form: one of its fields, or none for no value."""

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)

    struct_val: dict[str, Tensor] | None = Field(default=None, alias="structVal")
    list_val: list[Tensor] | None = Field(default=None, alias="listVal")
    string_val: list[str] | None = Field(default=None, alias="stringVal")
    float_val: list[Number] | None = Field(default=None, alias="floatVal")
    double_val: list[Number] | None = Field(default=None, alias="doubleVal")
    int_val: list[Int64] | None = Field(default=None, alias="intVal")
    int64_val: list[Int64] | None = Field(default=None, alias="int64Val")
    bool_val: list[bool] | None = Field(default=None, alias="boolVal")

    def value(self) -> Any:
        """The plain value: a dict, a list, or the one scalar (a list of several)."""
        if self.struct_val is not None:
            return {k: v.value() for k, v in self.struct_val.items()}
        if self.list_val is not None:
            return [v.value() for v in self.list_val]
        scalars = (self.string_val, self.float_val, self.double_val, self.int_val, self.int64_val)
        for values in (*scalars, self.bool_val):
            if values is not None:
                return values[0] if len(values) == 1 else values
        return None


def to_tensor(value: Any) -> dict[str, Any]:
    """A plain value -> a Tensor in its JSON form."""
    if isinstance(value, bool):
        return {"boolVal": [value]}
    if isinstance(value, int):
        return {"intVal": [value]}
    if isinstance(value, float):
        return {"floatVal": [value]}
    if isinstance(value, str):
        return {"stringVal": [value]}
    if isinstance(value, list):
        return {"listVal": [to_tensor(v) for v in value]}
    if isinstance(value, dict):
        return {"structVal": {k: to_tensor(v) for k, v in value.items()}}
    return {}


class StreamingPredictRequest(_Body):
    inputs: list[Tensor] = Field(min_length=1, max_length=1)
    parameters: Tensor | None = None

    def unwrap(self) -> PredictRequest:
        """The predict request the tensors carry; what does not fit one is located in that
        request (`located` moves it into this body)."""
        parameters = self.parameters.value() if self.parameters else {}
        instance = self.inputs[0].value()
        try:
            return PredictRequest.model_validate(
                {"instances": [instance], "parameters": parameters or {}}
            )
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from exc

    @staticmethod
    def located(exc: RequestValidationError) -> RequestValidationError:
        """Errors of the predict request the tensors carry, located in this body instead."""
        where = {"instances": "inputs", "parameters": "parameters"}
        return RequestValidationError(
            [
                {**e, "loc": (where.get(str(e["loc"][0]), "inputs"), *e["loc"][1:])}
                for e in exc.errors()
            ]
        )


# Jobs: one per family ---------------------------------------------------------------------

Predictions = tuple[list[dict[str, Any]], int, int]
M = TypeVar("M", bound=BaseModel)


class VertexJob(Job):
    """One instance of a predict request, for one model family."""

    dialect: ClassVar[Dialect] = "vertex"
    family: ClassVar[ModelFamily]

    def __init__(self, body: PredictRequest, resource: str) -> None:
        self.body = body
        self.parameters = _with_instance_parameters(body)
        self.resource = resource
        """projects/{p}/locations/{l}/publishers/google/models/{model}, as called."""
        limit = MAX_OUTPUT_TOKENS[self.family]
        asked = self.parameters.max_output_tokens
        if asked is not None and asked > limit:
            raise InvalidRequest(
                f"maxOutputTokens is {asked}; {self.family} allows at most {limit}."
            )

    def max_tokens(self, defaults: SamplingDefaults) -> int:
        """What the caller asked for, else the service's default within Codey's limit."""
        asked = self.parameters.max_output_tokens
        return asked or min(defaults.max_tokens, MAX_OUTPUT_TOKENS[self.family])

    def cache_request(self) -> dict[str, Any] | None:
        # The answer names the model as called, so the key does too.
        return {"resource": self.resource, **self.body.model_dump()}

    def asked_temperature(self) -> float | None:
        return self.parameters.temperature

    @abstractmethod
    async def predict(self, services: Services) -> Predictions:
        """The family's predictions, with the prompt and completion tokens they took."""

    async def run(self, services: Services) -> Answer:
        predictions, prompt_tokens, completion_tokens = await self.predict(services)
        text_out = _contents(predictions)
        rendered = {
            "predictions": predictions,
            "metadata": token_metadata(
                prompt_tokens, completion_tokens, self.billed_text(), text_out
            ),
            "model": self.resource,
        }
        return Answer(rendered, prompt_tokens, completion_tokens, text_out)

    @staticmethod
    def prediction(text: str) -> dict[str, Any]:
        """A streamed piece of the answer in the family's prediction shape."""
        return text_prediction(text)


class _CodeJob(VertexJob):
    """code-bison and code-gecko, whose instances share Codey's code generation schema."""

    def __init__(self, body: PredictRequest, resource: str) -> None:
        super().__init__(body, resource)
        self.instance = _parse(CodeInstance, body.instances[0])


class CodeBisonJob(_CodeJob):
    service: ClassVar[Service] = "generation"
    family: ClassVar[ModelFamily] = "code-bison"

    def billed_text(self) -> str:
        return self.instance.prefix

    def request(self, services: Services) -> GenerationRequest:
        p = self.parameters
        return GenerationRequest(
            self.instance.prefix,
            language="",
            max_tokens=self.max_tokens(services.generation.defaults),
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=p.top_k,
        )

    async def predict(self, services: Services) -> Predictions:
        request = self.request(services)
        results = await services.generation.candidates(request, self.parameters.candidate_count)
        predictions = [text_prediction(r.answer, r.confidence) for r in results]
        completion_tokens = sum(r.completion_tokens for r in results)
        return predictions, results[-1].prompt_tokens, completion_tokens

    def run_stream(self, services: Services) -> AsyncIterator[Delta]:
        return services.generation.stream(self.request(services))


class CodeGeckoJob(_CodeJob):
    service: ClassVar[Service] = "completion"
    family: ClassVar[ModelFamily] = "code-gecko"

    def billed_text(self) -> str:
        return self.instance.prefix + (self.instance.suffix or "")

    async def predict(self, services: Services) -> Predictions:
        request = CompletionRequest(
            self.instance.prefix,
            self.instance.suffix or "",
            language="",
            max_completions=self.parameters.candidate_count,
            max_tokens=self.max_tokens(services.completion.defaults),
            temperature=self.parameters.temperature,
        )
        result = await services.completion.complete(request)
        predictions = [text_prediction(s.completion, s.confidence) for s in result.suggestions] or [
            text_prediction("", 0.0)
        ]
        return predictions, result.prompt_tokens, result.completion_tokens

    async def run_stream(self, services: Services) -> AsyncIterator[Delta]:
        # Suggestions need their whole text to be post-processed: one chunk.
        predictions, prompt_tokens, completion_tokens = await self.predict(services)
        yield Delta(
            predictions[0]["content"],
            finish_reason="stop",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )


class CodeChatBisonJob(VertexJob):
    service: ClassVar[Service] = "chat"
    family: ClassVar[ModelFamily] = "codechat-bison"

    def __init__(self, body: PredictRequest, resource: str) -> None:
        super().__init__(body, resource)
        chat = _parse(ChatInstance, body.instances[0])
        if chat.authors()[-1] != "user":
            raise InvalidRequest("The last message must come from the user (author 'user').")
        self.messages = chat.to_messages(system_prompt(None, chat.context))

    def billed_text(self) -> str:
        return "".join(m.content for m in self.messages[1:])

    def sampling(self, services: Services, n: int) -> Sampling:
        p = self.parameters
        return Sampling(
            max_tokens=self.max_tokens(services.chat.defaults),
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=p.top_k,
            stop=tuple(p.stop_sequences),
            n=n,
        )

    async def predict(self, services: Services) -> Predictions:
        sampling = self.sampling(services, self.parameters.candidate_count)
        generation = await services.chat.reply(self.messages, sampling)
        contents = [c.text.strip() for c in generation.choices]
        return [chat_prediction(contents)], generation.prompt_tokens, generation.completion_tokens

    def run_stream(self, services: Services) -> AsyncIterator[Delta]:
        return services.chat.stream_reply(self.messages, self.sampling(services, 1))

    @staticmethod
    def prediction(text: str) -> dict[str, Any]:
        return chat_prediction([text])


JOBS: dict[ModelFamily, type[VertexJob]] = {
    "code-bison": CodeBisonJob,
    "code-gecko": CodeGeckoJob,
    "codechat-bison": CodeChatBisonJob,
}


def _parse(model: type[M], data: dict[str, Any]) -> M:
    """An instance, validated; its errors located in the request body."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("instances", 0, *e["loc"])} for e in exc.errors()]
        ) from exc


def _contents(predictions: list[dict[str, Any]]) -> str:
    parts = []
    for prediction in predictions:
        if "content" in prediction:
            parts.append(prediction["content"])
        parts += [c["content"] for c in prediction.get("candidates", [])]
    return "".join(parts)


def _with_instance_parameters(body: PredictRequest) -> Parameters:
    """`parameters`, completed by sampling fields that older Codey clients put in the instance
    itself (`parameters` wins where both say)."""
    inside = _parse(Parameters, body.instances[0])  # the instance's other fields are ignored
    if not inside.model_fields_set:
        return body.parameters
    given = body.parameters.model_dump(exclude_unset=True)
    return Parameters.model_validate({**inside.model_dump(exclude_unset=True), **given})
