"""Vertex AI's predict and serverStreamingPredict for the Codey model names, and the
publisher-model lookup that the SDK's `from_pretrained` makes first."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from codey.api.calls import principal, serve, stream
from codey.api.errors import error_body, from_codey
from codey.api.vertex.protocol import (
    INSTANCE_SCHEMAS,
    JOBS,
    ModelFamily,
    PredictRequest,
    StreamingPredictRequest,
    VertexJob,
    family_of,
    to_tensor,
)
from codey.errors import CodeyError, NotFound
from codey.gateway.auth import Principal

router = APIRouter(tags=["vertex"])
Caller = Annotated[Principal, Depends(principal)]
_MODEL_PATH = "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}"
_SCHEMA_BASE = "gs://google-cloud-aiplatform/schema/predict"


def _job(project: str, location: str, model: str, body: PredictRequest) -> VertexJob:
    resource = f"projects/{project}/locations/{location}/publishers/google/models/{model}"
    return JOBS[_family(model)](body, resource)


def _family(model: str) -> ModelFamily:
    family = family_of(model)
    if family is None:
        raise NotFound(
            f"Publisher model {model!r} is not served here.",
            hint="Use code-bison, codechat-bison or code-gecko (any version).",
        )
    return family


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


@router.post(_MODEL_PATH + ":predict")
async def predict(
    project: str, location: str, model: str, body: PredictRequest, request: Request, who: Caller
) -> JSONResponse:
    """code-bison (generation), codechat-bison (chat) and code-gecko (completion)."""
    return await serve(request, who, _job(project, location, model, body))


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
    _family(model)  # an unknown model is a 404 whatever the body holds
    try:
        job = _job(project, location, model, body.unwrap())
    except RequestValidationError as exc:  # the request's, or an instance's, by its family
        raise StreamingPredictRequest.located(exc) from exc
    deltas = await stream(request, who, job)

    async def chunks() -> AsyncIterator[str]:
        yield "["
        separator = ""
        try:
            async with aclosing(deltas):
                async for delta in deltas:
                    if delta.text or delta.finish_reason is not None:
                        output = to_tensor(job.prediction(delta.text))
                        yield separator + json.dumps({"outputs": [output]})
                        separator = ","
        except CodeyError as exc:
            # Google's REST streams end a failed array with an error element.
            yield separator + json.dumps(error_body(from_codey(exc, 0), "vertex"))
        yield "]"

    return StreamingResponse(chunks(), media_type="application/json")
