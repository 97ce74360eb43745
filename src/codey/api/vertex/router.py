"""Vertex AI's predict and serverStreamingPredict for the Codey model names, and the
publisher-model lookup that the SDK's `from_pretrained` makes first."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError

from codey.api.calls import metered, new_call, principal, serve
from codey.api.errors import error_body, from_codey
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
from codey.errors import CodeyError, InvalidRequest, NotFound
from codey.gateway.auth import Principal
from codey.gateway.pipeline import Answer
from codey.runtime import Runtime
from codey.services.chat import system_prompt
from codey.services.completion import CompletionRequest
from codey.services.generation import GenerationRequest

router = APIRouter(tags=["vertex"])
Caller = Annotated[Principal, Depends(principal)]
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
    project: str, location: str, model: str, body: PredictRequest, request: Request, who: Caller
) -> JSONResponse:
    """code-bison (generation), codechat-bison (chat) and code-gecko (completion)."""
    family = _family(model)
    job = _job(request.app.state.runtime, family, body)
    call = new_call(
        request,
        who,
        job.service,
        "vertex",
        model,
        job.input_text,
        cache_request=body.model_dump(),
        deterministic=job.deterministic,
    )

    async def work() -> Answer:
        predictions, prompt_tokens, completion_tokens = await job.predict()
        text_out = _contents(predictions)
        rendered = {
            "predictions": predictions,
            "metadata": token_metadata(prompt_tokens, completion_tokens, job.input_text, text_out),
            "model": f"projects/{project}/locations/{location}/publishers/google/models/{model}",
        }
        return Answer(rendered, prompt_tokens, completion_tokens, text_out)

    return await serve(request, call, work)


@router.post(_MODEL_PATH + ":serverStreamingPredict")
async def server_streaming_predict(
    project: str,
    location: str,
    model: str,
    body: StreamingPredictRequest,
    request: Request,
    who: Caller,
) -> StreamingResponse:
    """The same three families, streamed as a JSON array of responses, as the REST
    transport of Google's clients reads it."""
    family = _family(model)
    job = _job(request.app.state.runtime, family, body.unwrap())
    call = new_call(request, who, job.service, "vertex", model, job.input_text)
    deltas = await metered(request, call, job.stream())

    async def chunks() -> AsyncIterator[str]:
        yield "["
        separator = ""
        try:
            async with aclosing(deltas):
                async for delta in deltas:
                    if delta.text or delta.finish_reason is not None:
                        output = (
                            chat_prediction([delta.text])
                            if family == "codechat-bison"
                            else text_prediction(delta.text)
                        )
                        yield separator + json.dumps({"outputs": [to_tensor(output)]})
                        separator = ","
        except CodeyError as exc:
            # Google's REST streams end a failed array with an error element.
            yield separator + json.dumps(error_body(from_codey(exc, 0), "vertex"))
        yield "]"

    return StreamingResponse(chunks(), media_type="application/json")


def _contents(predictions: list[dict[str, Any]]) -> str:
    parts = []
    for prediction in predictions:
        if "content" in prediction:
            parts.append(prediction["content"])
        parts += [c["content"] for c in prediction.get("candidates", [])]
    return "".join(parts)


Predictions = tuple[list[dict[str, Any]], int, int]


@dataclass
class _Job:
    """One instance of one model family, ready to run whole or streamed."""

    service: str
    input_text: str
    deterministic: bool
    predict: Callable[[], Awaitable[Predictions]]
    stream: Callable[[], AsyncIterator[Delta]]


def _job(runtime: Runtime, family: ModelFamily, body: PredictRequest) -> _Job:
    p = body.parameters
    max_tokens = _max_tokens(family, p.max_output_tokens)
    instance = body.instances[0]
    if family == "codechat-bison":
        chat = _parse(ChatInstance, instance)
        if chat.messages[-1].author != "user":
            raise InvalidRequest("The last message must come from the user (author 'user').")
        temperature = 0.2 if p.temperature is None else p.temperature
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=p.top_p or 0.95,
            top_k=p.top_k or 40,
            stop=tuple(p.stop_sequences),
            n=p.candidate_count,
        )
        messages = chat.to_messages(system_prompt(None, chat.context))

        async def chat_predict() -> Predictions:
            generation = await runtime.chat.reply(messages, params)
            contents = [c.text.strip() for c in generation.choices]
            return (
                [chat_prediction(contents)],
                generation.prompt_tokens,
                generation.completion_tokens,
            )

        single = SamplingParams(**{**params.__dict__, "n": 1})
        return _Job(
            "chat",
            "".join(m.content for m in messages[1:]),
            temperature == 0,
            chat_predict,
            lambda: runtime.chat.stream_reply(messages, single),
        )

    code = _parse(CodeInstance, instance)
    if family == "code-gecko":
        request = CompletionRequest(
            code.prefix,
            code.suffix or "",
            language="",
            max_completions=p.candidate_count,
            max_tokens=max_tokens,
            temperature=p.temperature or 0.0,
        )

        async def gecko_predict() -> Predictions:
            result = await runtime.completion.complete(request)
            predictions = [
                text_prediction(s.completion, s.confidence) for s in result.suggestions
            ] or [text_prediction("", 0.0)]
            return predictions, result.prompt_tokens, result.completion_tokens

        async def gecko_stream() -> AsyncIterator[Delta]:
            # Suggestions need their whole text to be post-processed: one chunk.
            predictions, prompt_tokens, completion_tokens = await gecko_predict()
            yield Delta(
                predictions[0]["content"],
                finish_reason="stop",
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )

        return _Job(
            "completion",
            code.prefix + (code.suffix or ""),
            request.temperature == 0,
            gecko_predict,
            gecko_stream,
        )

    temperature = 0.2 if p.temperature is None else p.temperature
    generation_request = GenerationRequest(
        code.prefix,
        language="",
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=p.top_p or 0.95,
        top_k=p.top_k or 40,
    )

    async def bison_predict() -> Predictions:
        predictions, prompt_tokens, completion_tokens = [], 0, 0
        for seed in range(p.candidate_count):
            result = await runtime.generation.generate(replace(generation_request, seed=seed))
            predictions.append(text_prediction(result.answer, result.confidence))
            prompt_tokens = result.prompt_tokens
            completion_tokens += result.completion_tokens
        return predictions, prompt_tokens, completion_tokens

    return _Job(
        "generation",
        code.prefix,
        temperature == 0,
        bison_predict,
        lambda: runtime.generation.stream(generation_request),
    )
