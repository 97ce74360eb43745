"""The Vertex dialect through a real server on the scripted fake (tests/fake_script.py), with
Google's own clients over REST."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import vertexai
from google.api_core import exceptions as google_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import PredictionServiceClient
from google.protobuf import json_format, struct_pb2
from vertexai.language_models import CodeChatModel, CodeGenerationModel

from tests.api.conftest import Server

PROJECT, LOCATION = "demo-project", "us-central1"


@pytest.fixture
def prediction_client(fake_server: Server) -> Iterator[PredictionServiceClient]:
    client = PredictionServiceClient(
        transport="rest",
        client_options={"api_endpoint": fake_server.url},
        credentials=AnonymousCredentials(),
    )
    yield client


@pytest.fixture
def sdk(fake_server: Server) -> None:
    vertexai.init(
        project=PROJECT,
        location=LOCATION,
        api_transport="rest",
        api_endpoint=fake_server.url,
        credentials=AnonymousCredentials(),
    )


def endpoint(model: str) -> str:
    return f"projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{model}"


def as_values(*items: dict[str, object]) -> list[struct_pb2.Value]:
    return [json_format.ParseDict(item, struct_pb2.Value()) for item in items]


def test_code_bison_through_the_prediction_client(
    prediction_client: PredictionServiceClient,
) -> None:
    response = prediction_client.predict(
        endpoint=endpoint("code-bison@002"),
        instances=as_values({"prefix": "Write a Python function that adds two numbers."}),
        parameters=json_format.ParseDict(
            {"temperature": 0.0, "maxOutputTokens": 96}, struct_pb2.Value()
        ),
    )
    prediction = json_format.MessageToDict(response._pb)["predictions"][0]
    assert "def " in prediction["content"]
    assert "def add(" in prediction["content"]  # the scripted answer to this prompt
    assert prediction["safetyAttributes"]["blocked"] is False
    assert prediction["citationMetadata"] == {"citations": []}
    tokens = json_format.MessageToDict(response._pb)["metadata"]["tokenMetadata"]
    assert tokens["inputTokenCount"]["totalTokens"] > 0
    assert tokens["outputTokenCount"]["totalBillableCharacters"] > 0


def test_code_gecko_through_the_prediction_client(
    prediction_client: PredictionServiceClient,
) -> None:
    response = prediction_client.predict(
        endpoint=endpoint("code-gecko"),
        instances=as_values({"prefix": "import numpy as ", "suffix": "\n"}),
        parameters=json_format.ParseDict({"maxOutputTokens": 16}, struct_pb2.Value()),
    )
    predictions = json_format.MessageToDict(response._pb)["predictions"]
    assert predictions[0]["content"] == "np"


def test_codechat_bison_through_the_prediction_client(
    prediction_client: PredictionServiceClient,
) -> None:
    response = prediction_client.predict(
        endpoint=endpoint("codechat-bison"),
        instances=as_values(
            {
                "context": "We are writing Python.",
                "messages": [{"author": "user", "content": "Which keyword defines a function?"}],
            }
        ),
        parameters=json_format.ParseDict({"maxOutputTokens": 32}, struct_pb2.Value()),
    )
    prediction = json_format.MessageToDict(response._pb)["predictions"][0]
    # the script answers so only if the context and the question reached the model together
    assert "def" in prediction["candidates"][0]["content"]
    assert "`def` keyword" in prediction["candidates"][0]["content"]


def test_codechat_bison_takes_turns_without_authors_and_sampling_in_the_instance(
    prediction_client: PredictionServiceClient,
) -> None:
    """What Google's service took from older Codey clients: `messages` with only `content`
    (alternating turns that end with the user's) and sampling fields beside them."""
    response = prediction_client.predict(
        endpoint=endpoint("codechat-bison"),
        instances=as_values(
            {
                "context": "We are writing Python.",
                "messages": [
                    {"content": "Hello."},
                    {"content": "Hello! How can I help?"},
                    {"content": "Which keyword defines a function?"},
                ],
                "temperature": 0.0,
                "maxOutputTokens": 32,
            }
        ),
    )
    prediction = json_format.MessageToDict(response._pb)["predictions"][0]
    assert "`def` keyword" in prediction["candidates"][0]["content"]
    with pytest.raises(google_errors.BadRequest, match="maxOutputTokens"):
        prediction_client.predict(  # an instance's limit is checked as the parameters' are
            endpoint=endpoint("codechat-bison"),
            instances=as_values({"messages": [{"content": "Hi"}], "maxOutputTokens": 4096}),
        )


def test_an_unknown_model_is_a_google_not_found(
    prediction_client: PredictionServiceClient,
) -> None:
    with pytest.raises(google_errors.NotFound, match="text-bison"):
        prediction_client.predict(
            endpoint=endpoint("text-bison"), instances=as_values({"prefix": "x"})
        )


def test_code_generation_model(sdk: None) -> None:
    model = CodeGenerationModel.from_pretrained("code-bison@002")
    response = model.predict(
        prefix="Write a Python function that returns the square of x.",
        max_output_tokens=96,
        temperature=0.0,
    )
    assert "def square(" in response.text
    gecko = CodeGenerationModel.from_pretrained("code-gecko@002")
    completion = gecko.predict(prefix="def square(x):\n    return ", max_output_tokens=16)
    assert "x" in completion.text


def test_code_chat_model(sdk: None) -> None:
    chat = CodeChatModel.from_pretrained("codechat-bison@002").start_chat(
        context="We are writing Python.", max_output_tokens=48, temperature=0.0
    )
    first = chat.send_message("My name is Ada. Reply with one short sentence.")
    assert first.text
    second = chat.send_message("What is my name?")
    assert "Ada" in second.text
    assert len(chat.message_history) == 4


def test_code_generation_streaming(sdk: None) -> None:
    model = CodeGenerationModel.from_pretrained("code-bison@002")
    pieces = [
        r.text
        for r in model.predict_streaming(
            prefix="Write a Python function that adds two numbers.",
            max_output_tokens=48,
            temperature=0.0,
        )
    ]
    assert len(pieces) > 1
    assert "def add(" in "".join(pieces)


def test_code_chat_streaming(sdk: None) -> None:
    chat = CodeChatModel.from_pretrained("codechat-bison").start_chat(max_output_tokens=32)
    pieces = [r.text for r in chat.send_message_streaming("Say hello in Python.")]
    assert len(pieces) > 1
    assert "".join(pieces).strip()
