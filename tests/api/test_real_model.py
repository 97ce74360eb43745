"""A few end-to-end paths on the real embedded model, one per dialect and service kind: the
rest of the API suite runs on the scripted fake, so these are what shows that the real
engine's answers come through every layer."""

from __future__ import annotations

import ast

import httpx
import openai
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import PredictionServiceClient
from google.protobuf import json_format, struct_pb2

from tests.api.conftest import Server

pytestmark = pytest.mark.model


def test_native_generate(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/codey/generate",
        json={"prompt": "a function that reverses a string", "max_tokens": 96, "temperature": 0},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    tree = ast.parse(body["generated_code"])
    assert any(isinstance(node, ast.FunctionDef) for node in tree.body)
    assert body["language"] == "python"
    assert 0 < body["confidence"] <= 1
    stats = body["usage_stats"]
    assert body["tokens_used"] == stats["prompt_tokens"] + stats["completion_tokens"]


def test_native_complete(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/codey/complete",
        json={"prefix": "import numpy as ", "suffix": "\n", "max_completions": 1},
    )
    assert response.status_code == 200, response.text
    suggestion = response.json()["suggestions"][0]
    assert suggestion["completion"] == "np" and suggestion["type"] == "import"
    assert response.json()["tokens_used"] > 0


def test_openai_chat_through_the_sdk(server: Server) -> None:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as sdk:
        response = sdk.chat.completions.create(
            model="codey",
            messages=[
                {"role": "system", "content": "You answer with one word."},
                {"role": "user", "content": "Which Python keyword defines a function?"},
            ],
            max_tokens=8,
            temperature=0,
            logprobs=True,
            top_logprobs=2,
        )
    choice = response.choices[0]
    assert "def" in (choice.message.content or "")
    assert response.usage is not None and response.usage.completion_tokens <= 8
    assert choice.logprobs is not None and choice.logprobs.content
    assert len(choice.logprobs.content[0].top_logprobs) == 2


def test_vertex_code_bison_through_the_prediction_client(server: Server) -> None:
    client = PredictionServiceClient(
        transport="rest",
        client_options={"api_endpoint": server.url},
        credentials=AnonymousCredentials(),
    )
    response = client.predict(
        endpoint="projects/p/locations/us-central1/publishers/google/models/code-bison@002",
        instances=[
            json_format.ParseDict(
                {"prefix": "Write a Python function that adds two numbers."}, struct_pb2.Value()
            )
        ],
        parameters=json_format.ParseDict(
            {"temperature": 0.0, "maxOutputTokens": 96}, struct_pb2.Value()
        ),
    )
    body = json_format.MessageToDict(response._pb)
    assert "def " in body["predictions"][0]["content"]
    assert body["metadata"]["tokenMetadata"]["outputTokenCount"]["totalBillableCharacters"] > 0
