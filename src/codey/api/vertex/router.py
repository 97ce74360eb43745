"""Vertex AI's predict and serverStreamingPredict for the Codey model names, and the
publisher-model lookup that the SDK's `from_pretrained` makes first."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from codey.api.calls import call_service, first_and_rest
from codey.api.vertex.protocol import (
    DEFAULT_OUTPUT_TOKENS,
    INSTANCE_SCHEMAS,
    MAX_OUTPUT_TOKENS,
    ChatInstance,
    CodeInstance,
    ModelFamily,
    PredictRequest,
    StreamingPredictRequest,
    chat_prediction,
    family_of,
    text_prediction,
    to_tensor,
    token_metadata,
)
from codey.backends.base import Delta, SamplingParams
from codey.errors import InvalidRequest, NotFound
from codey.runtime import Runtime
from codey.services.chat import system_prompt
from codey.services.completion import CompletionRequest
from codey.services.generation import GenerationRequest

router = APIRouter(tags=["vertex"])
_MODEL_PATH = "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}"
_SCHEMA_BASE = "gs://google-cloud-aiplatform/schema/predict"


def _family(model: str) -> ModelFamily:
    family = family_of(model)
    if family is None:
        raise NotFound(
            f"Publisher model {model!r} is not served here.",
            hint="Use code-bison, codechat-bison or code-gecko (any version).",
        )
    return family


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("instances", 0, *e["loc"])} for e in exc.errors()]
        ) from exc


@router.get("/v1/publishers/google/models/{model}")
async def publisher_model(model: str) -> dict[str, Any]:
    """What the Vertex SDK's `from_pretrained` looks up before its first call."""
    family = _family(model)
    base = model.split("@", 1)[0]
    return {
        "name": f"publishers/google/models/{base}",
        "versionId": model.split("@", 1)[1] if "@" in model else "001",
        "openSourceCategory": "PROPRIETARY",
        "launchStage": "GA",
        "publisherModelTemplate": (
            f"projects/{{user-project}}/locations/{{location}}/publishers/google/models/{model}"
        ),
        "predictSchemata": {
            "instanceSchemaUri": f"{_SCHEMA_BASE}/instance/{INSTANCE_SCHEMAS[family]}",
            "parametersSchemaUri": f"{_SCHEMA_BASE}/params/text_generation_1.0.0.yaml",
            "predictionSchemaUri": f"{_SCHEMA_BASE}/prediction/text_generation_1.0.0.yaml",
        },
    }


def _max_tokens(family: ModelFamily, requested: int | None) -> int:
    limit = MAX_OUTPUT_TOKENS[family]
    if requested is not None and requested > limit:
        raise InvalidRequest(f"maxOutputTokens is {requested}; {family} allows at most {limit}.")
    return requested or DEFAULT_OUTPUT_TOKENS[family]


@router.post(_MODEL_PATH + ":predict")
async def predict(
    project: str, location: str, model: str, body: PredictRequest, request: Request
) -> dict[str, Any]:
    """code-bison (generation), codechat-bison (chat) and code-gecko (completion)."""
    family = _family(model)
    runtime: Runtime = request.app.state.runtime
    p = body.parameters
    max_tokens = _max_tokens(family, p.max_output_tokens)
    temperature = 0.2 if p.temperature is None else p.temperature
    instance = body.instances[0]

    if family == "code-bison":
        code = _parse(CodeInstance, instance)
        predictions, prompt_tokens, completion_tokens = [], 0, 0
        for seed in range(p.candidate_count):
            result = await call_service(
                request,
                "generation",
                runtime.generation.generate(
                    GenerationRequest(
                        code.prefix,
                        language="",
                        max_tokens=max_tokens,
                        temperature=temperature,
                        top_p=p.top_p or 0.95,
                        top_k=p.top_k or 40,
                        seed=seed,
                    )
                ),
            )
            predictions.append(text_prediction(result.answer, result.confidence))
            prompt_tokens = result.prompt_tokens
            completion_tokens += result.completion_tokens
        text_in = code.prefix
    elif family == "code-gecko":
        code = _parse(CodeInstance, instance)
        completion = await call_service(
            request,
            "completion",
            runtime.completion.complete(
                CompletionRequest(
                    code.prefix,
                    code.suffix or "",
                    language="",
                    max_completions=p.candidate_count,
                    max_tokens=max_tokens,
                    temperature=0.0 if p.temperature is None else p.temperature,
                )
            ),
        )
        predictions = [
            text_prediction(s.completion, s.confidence) for s in completion.suggestions
        ] or [text_prediction("", 0.0)]
        prompt_tokens, completion_tokens = completion.prompt_tokens, completion.completion_tokens
        text_in = code.prefix + (code.suffix or "")
    else:
        chat = _parse(ChatInstance, instance)
        if chat.messages[-1].author != "user":
            raise InvalidRequest("The last message must come from the user (author 'user').")
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=p.top_p or 0.95,
            top_k=p.top_k or 40,
            stop=tuple(p.stop_sequences),
            n=p.candidate_count,
        )
        messages = chat.to_messages(system_prompt(None, chat.context))
        generation = await call_service(request, "chat", runtime.chat.reply(messages, params))
        predictions = [chat_prediction([c.text.strip() for c in generation.choices])]
        prompt_tokens = generation.prompt_tokens
        completion_tokens = generation.completion_tokens
        text_in = "".join(m.content for m in messages[1:]) + (chat.context or "")
    return {
        "predictions": predictions,
        "metadata": token_metadata(
            prompt_tokens, completion_tokens, text_in, _contents(predictions)
        ),
        "deployedModelId": "",
        "model": f"projects/{project}/locations/{location}/publishers/google/models/{model}",
    }


def _contents(predictions: list[dict[str, Any]]) -> str:
    parts = []
    for prediction in predictions:
        if "content" in prediction:
            parts.append(prediction["content"])
        parts += [c["content"] for c in prediction.get("candidates", [])]
    return "".join(parts)


@router.post(_MODEL_PATH + ":serverStreamingPredict")
async def server_streaming_predict(
    project: str, location: str, model: str, body: StreamingPredictRequest, request: Request
) -> StreamingResponse:
    """The same three families, streamed as a JSON array of responses, as the REST
    transport of Google's clients reads it."""
    family = _family(model)
    runtime: Runtime = request.app.state.runtime
    unwrapped = body.unwrap()
    p = unwrapped.parameters
    max_tokens = _max_tokens(family, p.max_output_tokens)
    temperature = 0.2 if p.temperature is None else p.temperature
    instance = unwrapped.instances[0]

    if family == "code-gecko":
        # Completions are short and need their whole text to be post-processed: one chunk.
        code = _parse(CodeInstance, instance)
        completion = await call_service(
            request,
            "completion",
            runtime.completion.complete(
                CompletionRequest(
                    code.prefix,
                    code.suffix or "",
                    language="",
                    max_completions=1,
                    max_tokens=max_tokens,
                )
            ),
        )
        text = completion.suggestions[0].completion if completion.suggestions else ""

        async def once() -> AsyncIterator[Delta]:
            yield Delta(text, finish_reason="stop")

        return _json_array_stream(request, "completion", family, once())
    if family == "code-bison":
        code = _parse(CodeInstance, instance)
        stream = runtime.generation.stream(
            GenerationRequest(
                code.prefix, language="", max_tokens=max_tokens, temperature=temperature
            )
        )
        first, rest = await first_and_rest(stream)
        return _json_array_stream(request, "generation", family, _chain(first, rest))
    chat = _parse(ChatInstance, instance)
    params = SamplingParams(
        max_tokens=max_tokens, temperature=temperature, stop=tuple(p.stop_sequences)
    )
    messages = chat.to_messages(system_prompt(None, chat.context))
    first, rest = await first_and_rest(runtime.chat.stream_reply(messages, params))
    return _json_array_stream(request, "chat", family, _chain(first, rest))


async def _chain(first: Delta, rest: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    yield first
    async for delta in rest:
        yield delta


def _json_array_stream(
    request: Request, service: str, family: ModelFamily, deltas: AsyncIterator[Delta]
) -> StreamingResponse:
    tally = request.app.state.usage

    async def body() -> AsyncIterator[str]:
        yield "["
        separator = ""
        last = Delta("")
        async for delta in deltas:
            last = delta
            if not delta.text and delta.finish_reason is None:
                continue
            if family == "codechat-bison":
                output = chat_prediction([delta.text])
            else:
                output = text_prediction(delta.text)
            yield separator + json.dumps({"outputs": [to_tensor(output)]})
            separator = ","
        yield "]"
        tally.record(
            service,
            ok=True,
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
        )

    return StreamingResponse(body(), media_type="application/json")
