"""Vertex AI Codey request and response shapes (code-bison, codechat-bison, code-gecko).

Google's own clients send integers as floats (64.0), `maxDecodeSteps` for `maxOutputTokens`, and,
for streaming, every value wrapped as a Tensor ({"stringVal": ["..."]}); all are accepted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from codey.backends.base import Message
from codey.gateway.pricing import billable_characters

ModelFamily = Literal["code-bison", "codechat-bison", "code-gecko"]

# Codey's published limits, kept as codey's defaults for these model names.
MAX_OUTPUT_TOKENS: dict[ModelFamily, int] = {
    "code-bison": 1024, "codechat-bison": 1024, "code-gecko": 64,
}  # fmt: skip
DEFAULT_OUTPUT_TOKENS: dict[ModelFamily, int] = {
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
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Parameters(_Body):
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_output_tokens: int | None = Field(
        default=None,
        ge=1,
        validation_alias=AliasChoices("maxOutputTokens", "maxDecodeSteps", "max_output_tokens"),
    )
    candidate_count: int = Field(
        default=1, ge=1, le=MAX_CANDIDATES, validation_alias=AliasChoices("candidateCount")
    )
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, validation_alias="topP")
    top_k: int | None = Field(default=None, ge=1, le=40, validation_alias="topK")
    stop_sequences: list[str] = Field(
        default_factory=list, max_length=16, validation_alias="stopSequences"
    )


class CodeInstance(_Body):
    """code-bison and code-gecko."""

    prefix: str
    suffix: str | None = None


class ChatAuthorMessage(_Body):
    author: str
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
        for message in self.messages:
            turns.append(
                Message("user" if message.author == "user" else "assistant", message.content)
            )
        return turns


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


def from_tensor(tensor: dict[str, Any]) -> Any:
    """A Tensor in its JSON form -> a plain value."""
    if "structVal" in tensor:
        return {k: from_tensor(v) for k, v in tensor["structVal"].items()}
    if "listVal" in tensor:
        return [from_tensor(v) for v in tensor["listVal"]]
    for key in ("stringVal", "floatVal", "doubleVal", "intVal", "int64Val", "boolVal"):
        if key in tensor:
            values = tensor[key]
            if key in ("intVal", "int64Val"):
                values = [int(v) for v in values]
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
    inputs: list[dict[str, Any]] = Field(min_length=1, max_length=1)
    parameters: dict[str, Any] | None = None

    def unwrap(self) -> PredictRequest:
        parameters = from_tensor(self.parameters) if self.parameters else {}
        return PredictRequest.model_validate(
            {"instances": [from_tensor(self.inputs[0])], "parameters": parameters or {}}
        )
