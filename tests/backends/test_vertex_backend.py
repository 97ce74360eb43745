"""GeminiBackend through the real google-genai SDK and google-auth, against FakeVertex.

No model is loaded here: the fake server writes the answers.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import AsyncIterator, Collection, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from codey.backends.base import (
    ChatPrompt,
    Delta,
    InfillPrompt,
    Message,
    Prompt,
    SamplingParams,
    TextPrompt,
)
from codey.backends.chat_fallback import CONTINUE_INSTRUCTIONS, INFILL_INSTRUCTIONS
from codey.backends.vertex import GeminiBackend
from codey.config import Deployment, ResilienceSettings
from codey.errors import ConfigError, InvalidRequest, UpstreamError, UpstreamTimeout
from tests.backends.fake_vertex import Failure, FakeVertex, Reply, pieces

PROJECT, LOCATION, MODEL = "codey-test", "us-central1", "gemini-2.5-flash"
EMAIL = f"codey@{PROJECT}.iam.gserviceaccount.com"
MODEL_PATH = f"/v1beta1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{MODEL}"
T = TypeVar("T")
RESILIENCE = ResilienceSettings(first_token_timeout=12, total_timeout=90)

SYSTEM = "You write Python."
CHAT = ChatPrompt(
    (
        Message("system", SYSTEM),
        Message("user", "Add two numbers."),
        Message("assistant", "def add(a, b): ..."),
        Message("user", "Now with a body."),
    )
)


def _pem(key: rsa.RSAPrivateKey) -> tuple[str, str]:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private.decode(), public.decode()


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    """A service account's private key and its public half, both PEM."""
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def server(keys: tuple[str, str]) -> Iterator[FakeVertex]:
    with FakeVertex(public_key=keys[1]) as server:
        yield server


@pytest.fixture
def fake(server: FakeVertex) -> FakeVertex:
    server.reset()
    return server


def _key_file(path: Path, private_pem: str, token_uri: str) -> Path:
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "k1",
        "private_key": private_pem,
        "client_email": EMAIL,
        "client_id": "1",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))
    return path


@pytest.fixture
def key_file(tmp_path: Path, keys: tuple[str, str], fake: FakeVertex) -> Path:
    return _key_file(tmp_path / "sa.json", keys[0], f"{fake.url}/token")


def _deployment(url: str, credentials: Path | None) -> Deployment:
    return Deployment(
        name="gemini-1",
        backend="vertex",
        url=url,
        model_id=MODEL,
        project=PROJECT,
        location=LOCATION,
        credentials_file=credentials,
    )


@pytest.fixture
async def gemini(fake: FakeVertex, key_file: Path) -> AsyncIterator[GeminiBackend]:
    backend = GeminiBackend.from_deployment(_deployment(fake.url, key_file), RESILIENCE)
    yield backend
    await backend.close()


def _only(items: Collection[T]) -> T:
    (item,) = items
    return item


def _texts(*prompts: str) -> int:
    """Tokens the fake counts for these texts sent together."""
    return len(pieces("\n".join(prompts)))


async def _stream(backend: GeminiBackend, prompt: Prompt, params: SamplingParams) -> list[Delta]:
    return [delta async for delta in backend.stream(prompt, params)]


async def test_chat_goes_out_in_vertex_wire_format_with_a_service_account_token(
    gemini: GeminiBackend, fake: FakeVertex
) -> None:
    answer = "def add(a, b):\n    return a + b"
    fake.script(Reply(answer))
    params = SamplingParams(
        max_tokens=50, temperature=0.3, top_p=0.9, top_k=20, stop=("END",), seed=7, top_logprobs=2
    )
    generation = await gemini.generate(CHAT, params)

    claims = _only(fake.claims)  # google-auth's JWT grant, signed with the key file's key
    assert claims["iss"] == EMAIL
    assert claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    sent = _only(fake.model_requests())
    assert sent.path == f"{MODEL_PATH}:generateContent"
    assert sent.headers["authorization"] == f"Bearer {_only(fake.tokens)}"
    assert sent.headers["x-server-timeout"] == "12"  # first_token_timeout bounds a whole answer
    assert sent.body["systemInstruction"]["parts"] == [{"text": SYSTEM}]
    assert [(c["role"], c["parts"]) for c in sent.body["contents"]] == [
        ("user", [{"text": "Add two numbers."}]),
        ("model", [{"text": "def add(a, b): ..."}]),
        ("user", [{"text": "Now with a body."}]),
    ]
    assert sent.body["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "topK": 20,
        "candidateCount": 1,
        "maxOutputTokens": 50,
        "stopSequences": ["END"],
        "responseLogprobs": True,
        "logprobs": 2,
        "seed": 7,
    }

    (choice,) = generation.choices
    assert choice.text == answer
    assert choice.finish_reason == "stop"
    assert generation.prompt_tokens == _texts(SYSTEM, *(m.content for m in CHAT.messages[1:]))
    assert generation.completion_tokens == len(pieces(answer)) == len(choice.tokens)
    assert "".join(t.text for t in choice.tokens) == answer
    assert all(len(t.top) == 2 and t.top[0] == (t.text, t.logprob) for t in choice.tokens)


async def test_n_candidates_and_the_length_limit(gemini: GeminiBackend, fake: FakeVertex) -> None:
    fake.script(Reply("one two three four", others=("five six",)))
    generation = await gemini.generate(CHAT, SamplingParams(max_tokens=3, n=2))

    assert [(c.text, c.finish_reason) for c in generation.choices] == [
        ("one two three", "length"),
        ("five six", "stop"),
    ]
    assert generation.completion_tokens == 5
    assert _only(fake.model_requests()).body["generationConfig"]["candidateCount"] == 2


async def test_stream_yields_the_pieces_in_order_then_usage(
    gemini: GeminiBackend, fake: FakeVertex
) -> None:
    answer = "for i in range(3): print(i)"
    fake.script(Reply(answer))
    prompt = ChatPrompt((Message("user", "Count to three."),))
    deltas = await _stream(gemini, prompt, SamplingParams(n=3))

    *pieces_, last = deltas
    assert [d.text for d in pieces_] == pieces(answer)
    assert all(d.token is not None and d.token.text == d.text for d in pieces_)
    assert last == Delta(
        "",
        finish_reason="stop",
        prompt_tokens=_texts("Count to three."),
        completion_tokens=len(pieces(answer)),
    )
    sent = _only(fake.model_requests())
    assert (sent.path, sent.query) == (f"{MODEL_PATH}:streamGenerateContent", "alt=sse")
    assert sent.body["generationConfig"]["candidateCount"] == 1
    assert sent.headers["x-server-timeout"] == "90"  # a stream has the whole request's time


async def test_a_stream_left_early_closes_quietly(gemini: GeminiBackend, fake: FakeVertex) -> None:
    fake.script(Reply("a b c d e f g h"), Reply("again"))
    stream = gemini.stream(CHAT, SamplingParams())
    assert (await anext(stream)).text == "a"
    await stream.aclose()  # type: ignore[attr-defined]
    (choice,) = (await gemini.generate(CHAT, SamplingParams())).choices
    assert choice.text == "again"


async def test_stream_cut_by_max_tokens_ends_with_length(
    gemini: GeminiBackend, fake: FakeVertex
) -> None:
    fake.script(Reply("a b c d e f"))
    deltas = await _stream(
        gemini, ChatPrompt((Message("user", "Letters"),)), SamplingParams(max_tokens=4)
    )
    assert "".join(d.text for d in deltas) == "a b c d"
    assert (deltas[-1].finish_reason, deltas[-1].completion_tokens) == ("length", 4)


async def test_count_tokens_asks_count_tokens(gemini: GeminiBackend, fake: FakeVertex) -> None:
    prompt = ChatPrompt((Message("system", SYSTEM), Message("user", "Sort a list, please.")))
    assert await gemini.count_tokens(prompt) == _texts(SYSTEM, "Sort a list, please.")

    sent = _only(fake.model_requests())
    assert sent.path == f"{MODEL_PATH}:countTokens"
    assert sent.body["systemInstruction"]["parts"] == [{"text": SYSTEM}]
    assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "Sort a list, please."}]}]


async def test_confidence_is_the_geometric_mean_of_the_upstream_probabilities(
    gemini: GeminiBackend, fake: FakeVertex
) -> None:
    logprobs = (-0.05, -0.7, -1.3)
    fake.script(Reply("x = 1", logprobs=logprobs))  # pieces "x", " =", " 1"
    (choice,) = (await gemini.generate(CHAT, SamplingParams())).choices

    assert [t.logprob for t in choice.tokens] == list(logprobs)
    assert choice.confidence == pytest.approx(math.exp(sum(logprobs) / len(logprobs)))


async def test_a_model_without_logprobs_is_asked_once_then_no_more(
    gemini: GeminiBackend, fake: FakeVertex
) -> None:
    fake.reject_logprobs = True
    first = await gemini.generate(CHAT, SamplingParams())
    second = await _stream(gemini, CHAT, SamplingParams())

    assert first.choices[0].tokens == [] and first.choices[0].confidence == 0.0
    assert all(d.token is None for d in second)
    asked = [
        bool(s.body["generationConfig"].get("responseLogprobs")) for s in fake.model_requests()
    ]
    assert asked == [True, False, False]  # the 400, its retry, then the stream


async def test_infill_asks_for_the_missing_code_in_a_chat_turn(
    gemini: GeminiBackend, fake: FakeVertex
) -> None:
    fake.script(Reply("```python\nreturn a + b\n```"), Reply("return a + b"))
    prompt = InfillPrompt(prefix="def add(a, b):\n    ", suffix="\n\nprint(add(1, 2))\n")
    fenced = (await gemini.generate(prompt, SamplingParams())).choices[0]
    plain = (await gemini.generate(prompt, SamplingParams())).choices[0]

    assert (fenced.text, fenced.tokens) == ("return a + b", [])  # tokens no longer spell it
    assert plain.text == "return a + b" and plain.confidence > 0
    sent = fake.model_requests()[0].body
    assert sent["systemInstruction"]["parts"] == [{"text": INFILL_INSTRUCTIONS}]
    (turn,) = sent["contents"]
    assert turn["role"] == "user"
    assert prompt.prefix in turn["parts"][0]["text"] and prompt.suffix in turn["parts"][0]["text"]


async def test_raw_text_is_continued_through_chat(gemini: GeminiBackend, fake: FakeVertex) -> None:
    fake.script(Reply("b):"))
    (choice,) = (await gemini.generate(TextPrompt("def add(a, "), SamplingParams())).choices
    assert choice.text == "b):"
    sent = _only(fake.model_requests()).body
    assert sent["systemInstruction"]["parts"] == [{"text": CONTINUE_INSTRUCTIONS}]
    assert "def add(a, " in sent["contents"][0]["parts"][0]["text"]


@pytest.mark.parametrize(
    ("failure", "wait"),
    [
        (Failure(429, "Resource exhausted, please try again later.", retry_after="7"), 7.0),
        (Failure(429, "Resource exhausted, please try again later.", retry_delay="2.5s"), 2.5),
    ],
)
async def test_429_is_retryable_after_the_time_it_asks(
    gemini: GeminiBackend, fake: FakeVertex, failure: Failure, wait: float
) -> None:
    fake.script(failure)
    with pytest.raises(UpstreamError) as caught:
        await gemini.generate(CHAT, SamplingParams())
    error = caught.value
    assert (error.retryable, error.retry_after, error.upstream_status) == (True, wait, 429)
    assert "Resource exhausted" in error.message
    assert len(fake.model_requests()) == 1  # the SDK does not retry behind the gateway's back


async def test_500_is_retryable(gemini: GeminiBackend, fake: FakeVertex) -> None:
    fake.script(Failure(500, "Internal error encountered."))
    with pytest.raises(UpstreamError) as caught:
        await _stream(gemini, CHAT, SamplingParams())
    error = caught.value
    assert (error.retryable, error.retry_after, error.upstream_status) == (True, None, 500)


@pytest.mark.parametrize("status", [400, 404])
async def test_400_and_404_are_the_callers_fault(
    gemini: GeminiBackend, fake: FakeVertex, status: int
) -> None:
    fake.script(Failure(status, "Request contains an invalid argument."))
    with pytest.raises(InvalidRequest, match="Request contains an invalid argument"):
        await gemini.generate(CHAT, SamplingParams())


async def test_403_is_final_and_points_at_the_credentials(
    gemini: GeminiBackend, fake: FakeVertex
) -> None:
    fake.script(Failure(403, "Permission 'aiplatform.endpoints.predict' denied."))
    with pytest.raises(UpstreamError) as caught:
        await gemini.generate(CHAT, SamplingParams())
    assert (caught.value.retryable, caught.value.upstream_status) == (False, 403)
    assert caught.value.hint is not None and "credentials_file" in caught.value.hint


async def test_a_closed_port_is_a_retryable_upstream_error(
    fake: FakeVertex, key_file: Path
) -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = GeminiBackend.from_deployment(
        _deployment(f"http://127.0.0.1:{port}", key_file), RESILIENCE
    )
    try:
        for call in (
            backend.generate(CHAT, SamplingParams()),
            _stream(backend, CHAT, SamplingParams()),
        ):
            with pytest.raises(UpstreamError) as caught:
                await call
            assert caught.value.retryable and not isinstance(caught.value, UpstreamTimeout)
    finally:
        await backend.close()


async def test_no_first_token_in_time_is_an_upstream_timeout(
    fake: FakeVertex, key_file: Path
) -> None:
    quick = ResilienceSettings(first_token_timeout=0.2)
    backend = GeminiBackend.from_deployment(_deployment(fake.url, key_file), quick)
    fake.script(Reply(delay=1.0), Reply(delay=1.0))
    try:
        for call in (
            backend.generate(CHAT, SamplingParams()),
            _stream(backend, CHAT, SamplingParams()),
        ):
            with pytest.raises(UpstreamTimeout):
                await call
    finally:
        await backend.close()


async def test_a_key_google_does_not_know_gets_no_token(fake: FakeVertex, tmp_path: Path) -> None:
    stranger, _ = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    key_file = _key_file(tmp_path / "other.json", stranger, f"{fake.url}/token")
    backend = GeminiBackend.from_deployment(_deployment(fake.url, key_file), RESILIENCE)
    try:
        with pytest.raises(UpstreamError) as caught:
            await backend.generate(CHAT, SamplingParams())
    finally:
        await backend.close()
    assert not caught.value.retryable and "invalid_grant" in caught.value.message
    assert fake.model_requests() == []


def test_a_missing_or_broken_credentials_file_is_a_config_error(
    fake: FakeVertex, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        GeminiBackend.from_deployment(_deployment(fake.url, tmp_path / "absent.json"), RESILIENCE)
    assert caught.value.hint is not None and "credentials_file" in caught.value.hint

    broken = tmp_path / "broken.json"
    broken.write_text('{"type": "service_account"}')
    with pytest.raises(ConfigError, match="cannot be used"):
        GeminiBackend.from_deployment(_deployment(fake.url, broken), RESILIENCE)


async def test_application_default_credentials_are_used_without_a_file(
    fake: FakeVertex, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    backend = GeminiBackend.from_deployment(_deployment(fake.url, None), RESILIENCE)
    try:
        await backend.generate(CHAT, SamplingParams())
    finally:
        await backend.close()
    assert _only(fake.claims)["iss"] == EMAIL


def test_no_application_default_credentials_is_a_config_error(
    fake: FakeVertex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    with pytest.raises(ConfigError) as caught:
        GeminiBackend.from_deployment(_deployment(fake.url, None), RESILIENCE)
    assert "gcloud auth application-default login" in str(caught.value.hint)
