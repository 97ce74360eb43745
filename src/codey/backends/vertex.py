"""Gemini on Vertex AI, through the google-genai SDK.

Gemini only chats: raw text and fill-in-the-middle reach it through the prompts of
`chat_fallback`. What google-genai 2.34.0 sends on the wire (base URL, then `v1beta1/`):

    POST projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent
    POST projects/{p}/locations/{l}/publishers/google/models/{m}:streamGenerateContent?alt=sse
    POST projects/{p}/locations/{l}/publishers/google/models/{m}:countTokens

Token counts come from `usageMetadata`, log-probabilities from each candidate's
`logprobsResult.chosenCandidates`. Retrying is the gateway's job, so the SDK's own retries are
switched off; every SDK, HTTP or auth exception leaves as a `codey.errors` exception.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import google.auth
import httpx
from google import genai
from google.auth import exceptions as auth_errors
from google.auth.credentials import Credentials
from google.genai import errors as genai_errors
from google.genai import types
from google.oauth2 import service_account

from codey.backends.base import (
    Backend,
    Choice,
    Delta,
    FinishReason,
    Generation,
    InfillPrompt,
    Prompt,
    SamplingParams,
    TextPrompt,
    TokenLogprob,
    deltas_for,
)
from codey.backends.chat_fallback import continue_as_chat, infill_as_chat, unfence
from codey.backends.registry import BackendContext, register
from codey.config import Deployment, ResilienceSettings
from codey.errors import (
    CodeyError,
    ConfigError,
    InvalidRequest,
    UpstreamError,
    UpstreamTimeout,
    retry_after_seconds,
)

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
DEFAULT_CONTEXT = 1_048_576
MAX_TOP_LOGPROBS = 20  # Vertex AI accepts 1 to 20 alternatives per step.
CREDENTIALS_HINT = (
    "Check the deployment's credentials_file (a service-account key of the project, with the "
    "Vertex AI User role) or the Application Default Credentials."
)
log = logging.getLogger(__name__)
T = TypeVar("T")


def _optional(module: str, name: str) -> tuple[type[BaseException], ...]:
    """An exception class of a transport google-genai may use, if it is installed."""
    try:
        return (getattr(importlib.import_module(module), name),)
    except (ImportError, AttributeError):
        return ()


# google-genai sends through httpx, or httpx2 (GOOGLE_GENAI_HTTP_CLIENT) or aiohttp if installed.
# TimeoutError first: it is also an OSError.
_TIMEOUTS = (TimeoutError, httpx.TimeoutException, *_optional("httpx2", "TimeoutException"))
_TRANSPORT = (
    OSError,
    httpx.TransportError,
    auth_errors.TransportError,
    *_optional("httpx2", "TransportError"),
    *_optional("aiohttp", "ClientError"),
)


def load_credentials(path: Path | None) -> Credentials:
    """The service account of `path`, else Application Default Credentials."""
    if path is not None:
        try:
            return service_account.Credentials.from_service_account_file(str(path), scopes=SCOPES)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"The Vertex AI credentials file {path} cannot be used: {exc}",
                hint="Point credentials_file at a service-account JSON key "
                "(IAM > Service accounts > Keys), or unset it to use Application Default "
                "Credentials.",
            ) from exc
    try:
        credentials, _ = google.auth.default(scopes=SCOPES)
    except auth_errors.DefaultCredentialsError as exc:
        raise ConfigError(
            "No Google credentials found for Vertex AI.",
            hint="Run `gcloud auth application-default login`, set "
            "GOOGLE_APPLICATION_CREDENTIALS, or set the deployment's credentials_file.",
        ) from exc
    return credentials


@dataclass(frozen=True)
class _Request:
    contents: list[types.Content]
    system: str | None
    fenced: bool
    """The answer is code asked for in a chat turn: strip a Markdown fence around it."""


class GeminiBackend(Backend):
    """Chat, raw text and fill-in-the-middle from a Gemini model on Vertex AI."""

    name = "vertex"

    def __init__(
        self,
        client: genai.Client,
        model_id: str,
        resilience: ResilienceSettings,
        context_length: int = DEFAULT_CONTEXT,
    ) -> None:
        self._client = client
        self.model_id = model_id
        self._context_length = context_length
        self._first_token_timeout = resilience.first_token_timeout
        self._total_timeout = resilience.total_timeout
        self._logprobs = True  # until the model says it has none

    @classmethod
    def from_deployment(
        cls, deployment: Deployment, resilience: ResilienceSettings
    ) -> GeminiBackend:
        """A client for the deployment's project, region and credentials."""
        options = types.HttpOptions(
            base_url=deployment.url,
            timeout=_ms(resilience.first_token_timeout),
            # One attempt: the gateway retries and fails over. Setting it also stops the SDK's
            # hidden reconnect after a 1-10 s sleep on aiohttp connection errors.
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        try:
            client = genai.Client(
                vertexai=True,
                project=deployment.project,
                location=deployment.location,
                credentials=load_credentials(deployment.credentials_file),
                http_options=options,
            )
        except ValueError as exc:
            raise ConfigError(f"Vertex AI deployment {deployment.name}: {exc}") from exc
        context = deployment.context_length or DEFAULT_CONTEXT
        return cls(client, deployment.model_id or "", resilience, context)

    @property
    def context_length(self) -> int:
        return self._context_length

    async def count_tokens(self, prompt: Prompt) -> int:
        request = _request(prompt)
        config = types.CountTokensConfig(system_instruction=request.system)
        with _upstream(self.model_id):
            result = await self._client.aio.models.count_tokens(
                model=self.model_id, contents=request.contents, config=config
            )
        return result.total_tokens or 0

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        request = _request(prompt)
        response = await self._logprobs_optional(lambda: self._generate(request, params))
        candidates = sorted(response.candidates or (), key=lambda c: c.index or 0)
        if not candidates:
            raise _no_answer(response, self.model_id)
        choices = [_choice(candidate, request.fenced) for candidate in candidates]
        return Generation(choices, *_usage(response.usage_metadata))

    async def stream(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        request = _request(prompt)
        chunks, chunk = await self._logprobs_optional(lambda: self._open_stream(request, params))
        finish: FinishReason | None = None
        usage: types.GenerateContentResponseUsageMetadata | None = None
        try:
            with _upstream(self.model_id):
                while chunk is not None:
                    if not chunk.candidates and chunk.prompt_feedback is not None:
                        raise _no_answer(chunk, self.model_id)
                    usage = chunk.usage_metadata or usage  # running totals: the last one counts
                    for candidate in chunk.candidates or ():
                        for delta in deltas_for(_text(candidate), _tokens(candidate)):
                            yield delta
                        finish = _finish(candidate.finish_reason) or finish
                    chunk = await anext(chunks, None)
        finally:
            await _close(chunks)
        if finish is None:
            raise UpstreamError(f"Vertex AI ended the stream of {self.model_id} unfinished.")
        prompt_tokens, completion_tokens = _usage(usage)
        yield Delta(
            "",
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    async def close(self) -> None:
        await self._client.aio.aclose()

    async def _generate(
        self, request: _Request, params: SamplingParams
    ) -> types.GenerateContentResponse:
        with _upstream(self.model_id):
            return await self._client.aio.models.generate_content(
                model=self.model_id, contents=request.contents, config=self._config(request, params)
            )

    async def _open_stream(
        self, request: _Request, params: SamplingParams
    ) -> tuple[AsyncIterator[types.GenerateContentResponse], types.GenerateContentResponse | None]:
        """The stream and its first chunk, which must come within the first-token timeout."""
        config = self._config(request, params, stream=True)
        with _upstream(self.model_id):
            chunks = await self._client.aio.models.generate_content_stream(
                model=self.model_id, contents=request.contents, config=config
            )
            try:
                async with asyncio.timeout(self._first_token_timeout):
                    return chunks, await anext(chunks, None)
            except BaseException:
                await _close(chunks)
                raise

    def _config(
        self, request: _Request, params: SamplingParams, stream: bool = False
    ) -> types.GenerateContentConfig:
        top = min(params.top_logprobs, MAX_TOP_LOGPROBS)
        return types.GenerateContentConfig(
            system_instruction=request.system,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k or None,
            max_output_tokens=params.max_tokens,
            stop_sequences=list(params.stop) or None,
            seed=params.seed,
            candidate_count=1 if stream else params.n,
            # Every service scores its answers, so log-probabilities are always asked for.
            response_logprobs=self._logprobs or None,
            logprobs=top if self._logprobs and top > 0 else None,
            # The client's timeout bounds a whole answer; a stream gets the request's whole
            # budget, and its first chunk the first-token timeout (in _open_stream).
            http_options=types.HttpOptions(timeout=_ms(self._total_timeout)) if stream else None,
        )

    async def _logprobs_optional(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, once more without log-probabilities if the model says it has none."""
        try:
            return await call()
        except InvalidRequest as exc:
            if not (self._logprobs and "logprob" in exc.message.lower()):
                raise
        log.warning("%s has no log-probabilities: its answers get no confidence.", self.model_id)
        self._logprobs = False
        return await call()


def _request(prompt: Prompt) -> _Request:
    if isinstance(prompt, TextPrompt):
        chat, fenced = continue_as_chat(prompt), False
    elif isinstance(prompt, InfillPrompt):
        chat, fenced = infill_as_chat(prompt), True
    else:
        chat, fenced = prompt, False
    system = "\n\n".join(m.content for m in chat.messages if m.role == "system")
    contents = [
        types.Content(
            role="user" if m.role == "user" else "model", parts=[types.Part(text=m.content)]
        )
        for m in chat.messages
        if m.role != "system"
    ]
    if not contents:
        raise InvalidRequest("The prompt has no user message.")
    return _Request(contents, system or None, fenced)


def _choice(candidate: types.Candidate, fenced: bool) -> Choice:
    text, tokens = _text(candidate), _tokens(candidate)
    if fenced:
        text, tokens = unfence(text, tokens)
    return Choice(text, tokens, _finish(candidate.finish_reason) or "stop")


def _text(candidate: types.Candidate) -> str:
    parts = candidate.content.parts if candidate.content else None
    return "".join(p.text for p in parts or () if p.text and not p.thought)


def _tokens(candidate: types.Candidate) -> list[TokenLogprob]:
    result = candidate.logprobs_result
    if result is None:
        return []
    steps = result.top_candidates or []
    tokens = []
    for index, chosen in enumerate(result.chosen_candidates or ()):
        if chosen.log_probability is None or not math.isfinite(chosen.log_probability):
            continue
        top = (steps[index].candidates or []) if index < len(steps) else []
        alternatives = tuple(
            (c.token or "", c.log_probability) for c in top if c.log_probability is not None
        )
        tokens.append(TokenLogprob(chosen.token or "", chosen.log_probability, alternatives))
    return tokens


def _finish(reason: types.FinishReason | None) -> FinishReason | None:
    if reason is None:
        return None
    return "length" if reason == types.FinishReason.MAX_TOKENS else "stop"


def _usage(usage: types.GenerateContentResponseUsageMetadata | None) -> tuple[int, int]:
    """Prompt and completion tokens; thinking tokens are billed as output, so they count."""
    if usage is None:
        return 0, 0
    output = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
    return usage.prompt_token_count or 0, output


def _no_answer(response: types.GenerateContentResponse, model_id: str) -> CodeyError:
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = feedback.block_reason_message or feedback.block_reason.value
        return InvalidRequest(f"Vertex AI refused the prompt for {model_id}: {reason}.")
    return UpstreamError(f"Vertex AI answered {model_id} with no candidates.")


async def _close(chunks: AsyncIterator[Any]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@contextmanager
def _upstream(model_id: str) -> Iterator[None]:
    """Turn whatever the SDK, its HTTP client or google-auth raises into codey's errors."""
    try:
        yield
    except CodeyError:
        raise
    except Exception as exc:
        raise _translate(exc, model_id) from exc


def _translate(exc: Exception, model_id: str) -> CodeyError:
    if isinstance(exc, genai_errors.APIError):
        return _api_error(exc, model_id)
    if isinstance(exc, _TIMEOUTS):
        return UpstreamTimeout(f"Vertex AI did not answer for {model_id} in time.")
    if isinstance(exc, auth_errors.RefreshError):
        reason = exc.args[0] if exc.args else exc  # args[1] is the token endpoint's whole answer
        error = UpstreamError(
            f"Google did not issue an access token for {model_id}: {reason}",
            retryable=bool(getattr(exc, "retryable", False)),
        )
        error.hint = CREDENTIALS_HINT
        return error
    if isinstance(exc, _TRANSPORT):
        return UpstreamError(f"Cannot reach Vertex AI for {model_id}: {exc!r}")
    if isinstance(exc, genai_errors.UnknownApiResponseError):
        return UpstreamError(f"Vertex AI sent {model_id}'s answer in a form not understood: {exc}")
    return UpstreamError(f"The Vertex AI call for {model_id} failed: {exc!r}", retryable=False)


def _api_error(exc: genai_errors.APIError, model_id: str) -> CodeyError:
    code, message = exc.code, exc.message or str(exc)
    if code in (400, 404, 413):
        return InvalidRequest(f"Vertex AI rejected the request for {model_id}: {message}")
    text = f"Vertex AI answered {code} {exc.status or ''} for {model_id}: {message}"
    if code in (408, 429) or code >= 500:
        return UpstreamError(text, retry_after=_retry_after(exc), upstream_status=code)
    error = UpstreamError(text, retryable=False, upstream_status=code)
    if code in (401, 403):
        error.hint = CREDENTIALS_HINT
    return error


def _retry_after(exc: genai_errors.APIError) -> float | None:
    """Seconds to wait: the Retry-After header, else a google.rpc.RetryInfo error detail."""
    headers = getattr(exc.response, "headers", None)
    header = headers.get("retry-after") if headers is not None else None
    if header:
        return retry_after_seconds(header)
    details = exc.details.get("error", {}).get("details") if isinstance(exc.details, dict) else None
    for detail in details or ():
        if isinstance(detail, dict) and str(detail.get("@type")).endswith("rpc.RetryInfo"):
            return retry_after_seconds(str(detail.get("retryDelay", "")).removesuffix("s"))
    return None


@register("vertex")
def _vertex(deployment: Deployment, context: BackendContext) -> Backend:
    return GeminiBackend.from_deployment(deployment, context.resilience)
