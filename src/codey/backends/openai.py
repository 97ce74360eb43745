"""Any OpenAI-compatible server (vLLM, Ollama, llama.cpp's server, TGI, another codey) over
pooled aiohttp connections.

aiohttp rather than httpx: in front of an instant upstream, httpx spent 0.75 ms of CPU per
request at concurrency 1 and 1.24 ms at 16, aiohttp 0.24 and 0.10 ms (bench/http_clients.py,
docs/benchmarks.md), and the client is most of what a gateway does per request.

Chat goes to /chat/completions and raw text to /completions. Fill-in-the-middle goes where the
deployment's `infill` setting says: the completions API's `suffix` field (codey, Ollama, OpenAI),
a FIM string built here from a known template and sent as the prompt (vLLM or TGI serving a
base coder model), or a chat turn asking for the missing code (any chat model).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from codey.backends.base import (
    Backend,
    ChatPrompt,
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
from codey.backends.chat_fallback import infill_as_chat, unfence
from codey.backends.fim import FIM_TEMPLATES
from codey.backends.registry import BackendContext, register
from codey.config import Deployment, ResilienceSettings
from codey.errors import (
    ConfigError,
    InvalidRequest,
    UpstreamError,
    UpstreamTimeout,
    retry_after_seconds,
)

DEFAULT_CONTEXT = 32768
"""Assumed until the upstream says otherwise; the upstream still enforces its own window."""

Request = tuple[str, dict[str, Any], bool]
"""Endpoint, JSON body, and whether the answer needs its fences stripped."""


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, deployment: Deployment, resilience: ResilienceSettings) -> None:
        if deployment.infill not in ("suffix", "chat", *FIM_TEMPLATES):
            raise ConfigError(
                f"Deployment {deployment.name}: unknown infill {deployment.infill!r}.",
                hint=f"Use suffix, chat or one of {', '.join(FIM_TEMPLATES)}.",
            )
        self.model_id = deployment.model_id or ""
        self.url = (deployment.url or "").rstrip("/")
        self._infill = deployment.infill
        self._context = deployment.context_length
        key = deployment.api_key
        self._headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        # No read may stall longer than the first token may take; the router bounds the total.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=resilience.connect_timeout,
            sock_read=resilience.first_token_timeout,
        )
        self._connections = deployment.max_concurrency
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The pooled session, made on first use: aiohttp binds it to the running loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._connections),
            )
        return self._session

    @property
    def context_length(self) -> int:
        return self._context or DEFAULT_CONTEXT

    async def count_tokens(self, prompt: Prompt) -> int:
        """Exact, from the upstream's /tokenize (vLLM and codey have one); without it, the
        UTF-8 size of the text, which no byte-level tokenizer exceeds but for its template."""
        body: dict[str, Any] = {"model": self.model_id}
        if isinstance(prompt, ChatPrompt):
            body["messages"] = [{"role": m.role, "content": m.content} for m in prompt.messages]
        else:
            _, request, _ = self._request(prompt, SamplingParams(max_tokens=1))
            body["prompt"] = request.get("prompt", "")
        root = self.url.removesuffix("/v1")
        status, data = await self._fetch("POST", f"{root}/tokenize", body, (200, 404, 405))
        if status == 200:
            answer = json.loads(data)
            if answer.get("max_model_len") and self._context is None:
                self._context = int(answer["max_model_len"])
            return int(answer["count"])
        return len(json.dumps(body.get("messages") or body.get("prompt")).encode())

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        endpoint, body, fenced = self._request(prompt, params)
        _, data = await self._fetch("POST", self.url + endpoint, body)
        try:
            answer = json.loads(data)
            choices = [_choice(c, fenced) for c in answer["choices"]]
            usage = answer.get("usage") or {}
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(f"{self.url} answered something that is not a completion.") from exc
        return Generation(
            choices, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        )

    async def stream(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        # A stream is passed on as the model writes it: fences, if any, stay.
        endpoint, body, _ = self._request(prompt, params)
        body.update(n=1, stream=True, stream_options={"include_usage": True})
        finish: FinishReason | None = None
        usage: dict[str, Any] = {}
        try:
            async with self._client().post(self.url + endpoint, json=body) as response:
                if response.status != 200:
                    raise _status_error(response, await response.read(), self.url)
                async for raw in response.content:
                    if not raw.startswith(b"data:"):
                        continue
                    data = raw[5:].strip()
                    if data == b"[DONE]":
                        break
                    chunk = json.loads(data)
                    if chunk.get("error"):
                        raise UpstreamError(f"{self.url} failed mid-stream: {chunk['error']}")
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or ():
                        text, tokens = _delta_text(choice)
                        for delta in deltas_for(text, tokens):
                            yield delta
                        finish = _finish(choice.get("finish_reason")) or finish
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc, self.url) from exc
        except json.JSONDecodeError as exc:
            raise UpstreamError(f"{self.url} sent a stream event that is not JSON.") from exc
        if finish is None:
            raise UpstreamError(f"{self.url} ended the stream before the answer was finished.")
        yield Delta(
            "",
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )

    async def probe(self) -> None:
        """The server lists its models at /models, and ours among them."""
        _, data = await self._fetch("GET", f"{self.url}/models")
        try:
            listed = [m["id"] for m in json.loads(data)["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(f"{self.url}/models is not an OpenAI model list.") from exc
        if self.model_id not in listed:
            raise UpstreamError(
                f"{self.url} does not serve {self.model_id!r}; it lists {', '.join(listed)}.",
                retryable=False,
            )

    async def _fetch(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        expected: tuple[int, ...] = (200,),
    ) -> tuple[int, bytes]:
        """Status and body of one whole request; failures in codey's terms."""
        try:
            async with self._client().request(method, url, json=body) as response:
                data = await response.read()
                if response.status not in expected:
                    raise _status_error(response, data, self.url)
                return response.status, data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc, self.url) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _request(self, prompt: Prompt, params: SamplingParams) -> Request:
        """The endpoint and body that ask the upstream for `prompt`."""
        common: dict[str, Any] = {
            "model": self.model_id,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": params.n,
        }
        if params.stop:
            common["stop"] = list(params.stop)
        if params.seed is not None:
            common["seed"] = params.seed
        fenced = False
        if isinstance(prompt, InfillPrompt) and self._infill == "chat":
            prompt, fenced = infill_as_chat(prompt), True
        if isinstance(prompt, ChatPrompt):
            messages = [{"role": m.role, "content": m.content} for m in prompt.messages]
            top = min(params.top_logprobs, 20)
            return (
                "/chat/completions",
                {**common, "messages": messages, "logprobs": True, "top_logprobs": top},
                fenced,
            )
        completion = {**common, "logprobs": max(min(params.top_logprobs, 5), 1)}
        if isinstance(prompt, TextPrompt):
            return "/completions", {**completion, "prompt": prompt.text}, False
        if self._infill == "suffix":
            return (
                "/completions",
                {
                    **completion,
                    "prompt": prompt.preamble(None) + prompt.before_cursor,
                    "suffix": prompt.suffix,
                },
                False,
            )
        template = FIM_TEMPLATES[self._infill]
        stop = [*params.stop, *template.stop]
        fim = template.render(prompt.before_cursor, prompt.suffix)
        return (
            "/completions",
            {
                **completion,
                "prompt": prompt.preamble(template) + fim,
                "stop": stop,
            },
            False,
        )


def _choice(choice: dict[str, Any], fenced: bool) -> Choice:
    if "message" in choice:
        text = choice["message"].get("content") or ""
        tokens = _chat_tokens((choice.get("logprobs") or {}).get("content"))
    else:
        text = choice.get("text") or ""
        tokens = _completion_tokens(choice.get("logprobs"))
    if fenced:
        text, tokens = unfence(text, tokens)
    return Choice(text, tokens, _finish(choice.get("finish_reason")) or "stop")


def _delta_text(choice: dict[str, Any]) -> tuple[str, list[TokenLogprob]]:
    if "delta" in choice:
        text = (choice.get("delta") or {}).get("content") or ""
        return text, _chat_tokens((choice.get("logprobs") or {}).get("content"))
    return choice.get("text") or "", _completion_tokens(choice.get("logprobs"))


def _chat_tokens(content: list[dict[str, Any]] | None) -> list[TokenLogprob]:
    return [
        TokenLogprob(
            t["token"],
            float(t["logprob"]),
            tuple((a["token"], float(a["logprob"])) for a in t.get("top_logprobs") or ()),
        )
        for t in content or ()
        if _finite(t.get("logprob"))
    ]


def _completion_tokens(logprobs: dict[str, Any] | None) -> list[TokenLogprob]:
    if not logprobs:
        return []
    tops = logprobs.get("top_logprobs") or []
    return [
        TokenLogprob(
            text,
            float(lp),
            tuple((k, float(v)) for k, v in (tops[i] if i < len(tops) and tops[i] else {}).items()),
        )
        for i, (text, lp) in enumerate(
            zip(logprobs.get("tokens") or (), logprobs.get("token_logprobs") or (), strict=False)
        )
        if _finite(lp)
    ]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _finish(reason: str | None) -> FinishReason | None:
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"


def _transport_error(exc: BaseException, url: str) -> UpstreamError:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError(f"Cannot connect to {url}: {exc.strerror or exc}.")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamError(f"Cannot connect to {url}: no answer in time.")
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"{url} sent nothing within the first-token timeout.")
    return UpstreamError(f"The connection to {url} failed: {exc or type(exc).__name__}.")


def _status_error(response: aiohttp.ClientResponse, data: bytes, url: str) -> Exception:
    """An upstream's error status in codey's terms: its 400 is the caller's, its 429 and 5xx
    may pass on another try, anything else is a deployment that cannot serve."""
    status = response.status
    try:
        error = json.loads(data).get("error")
        message = error.get("message") if isinstance(error, dict) else str(error or "")
    except (ValueError, AttributeError):
        message = data[:200].decode(errors="replace")
    message = message or response.reason or ""
    if status in (400, 422):
        return InvalidRequest(f"The upstream refused the request: {message}")
    retryable = status in (408, 409, 429) or status >= 500
    return UpstreamError(
        f"{url} answered {status}: {message}",
        retryable=retryable,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
        upstream_status=status,
    )


@register("openai")
def _openai(deployment: Deployment, context: BackendContext) -> Backend:
    return OpenAIBackend(deployment, context.resilience)
