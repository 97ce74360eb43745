"""Code completion: prefix + suffix at the cursor -> a few distinct suggestions, ranked."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from codey.backends.base import (
    Backend,
    Delta,
    Generation,
    InfillPrompt,
    SamplingParams,
    TextPrompt,
    span_confidence,
    tokens_in,
)
from codey.config import CompletionSettings
from codey.errors import InvalidRequest
from codey.services.sampling import Sampling
from codey.services.suggestions import (
    Kind,
    cursor_at,
    drop_prefix_echo,
    heal_prefix,
    postprocess,
    suggestion_kind,
    unheal,
)

MAX_COMPLETIONS = 5


@dataclass(frozen=True)
class CompletionRequest:
    prefix: str
    suffix: str = ""
    language: str = "python"
    max_completions: int = 3
    context: str | None = None
    """Other code the completion should know about, such as related files."""
    max_tokens: int | None = None
    """None, here and below, leaves the value to the service's defaults (`[completion]`)."""
    temperature: float | None = None
    postprocess: bool = True
    """Off only to measure what post-processing is worth."""
    session: str | None = None
    """The client or document typing, whose prompt the engine keeps cached between keystrokes."""


@dataclass(frozen=True)
class Suggestion:
    completion: str
    confidence: float
    kind: Kind


@dataclass
class CompletionResult:
    suggestions: list[Suggestion]
    prompt_tokens: int
    completion_tokens: int
    elapsed_ms: float

    @property
    def tokens_used(self) -> int:
        return self.prompt_tokens + self.completion_tokens


_PROBES = ("x", " " * 64 + "x")
"""Continuations that post-processing keeps if anything more can be kept: a word on the same
line, and a line indented deeper than any block."""


@dataclass(frozen=True)
class Shaping:
    """From the model's raw infill to the suggestion inserted at the cursor; also tells the
    engine when to stop (it crosses into the engine process, so it is plain data)."""

    prefix: str
    suffix: str
    removed: str
    """Spaces taken off the cursor line before prompting (heal_prefix)."""
    line_prefix: str
    postprocess: bool = True

    def __call__(self, raw: str) -> tuple[str, int]:
        """The suggestion, and where in `raw` it starts."""
        text = drop_prefix_echo(raw, self.line_prefix) if self.postprocess else raw
        text = unheal(text, self.removed)
        offset = len(raw) - len(text)
        if self.postprocess:
            text = postprocess(text, self.prefix, self.suffix)
        return text, offset

    def settled(self, raw: str) -> bool:
        """True once more text cannot change the suggestion: post-processing would cut it."""
        now = self(raw)[0]
        return all(self(raw + probe)[0] == now for probe in _PROBES)


class CompletionService:
    def __init__(self, backend: Backend, defaults: CompletionSettings | None = None) -> None:
        self.backend = backend
        self.defaults = defaults or CompletionSettings()

    async def raw(
        self, prompt: str, suffix: str | None, sampling: Sampling, *, shaped: bool = False
    ) -> Generation:
        """The model's own continuation of `prompt`, or its infill before `suffix`, for
        clients that do their own post-processing; `shaped` gives an infill's answers the
        native suggestions' post-processing (and ends decoding where it would cut)."""
        params = sampling.resolve(self.defaults)
        asked = self._raw_prompt(prompt, suffix)
        if shaped and isinstance(asked, InfillPrompt):
            return await self._shaped(asked, params)
        return await self.backend.generate(asked, params)

    def stream_raw(
        self, prompt: str, suffix: str | None, sampling: Sampling, *, shaped: bool = False
    ) -> AsyncIterator[Delta]:
        """`raw`, token by token; shaped, in one piece once it is whole."""
        params = sampling.resolve(self.defaults)
        asked = self._raw_prompt(prompt, suffix)
        if shaped and isinstance(asked, InfillPrompt):
            return self._shaped_stream(asked, params)
        return self.backend.stream(asked, params)

    async def _shaped(self, infill: InfillPrompt, params: SamplingParams) -> Generation:
        line_prefix = cursor_at(infill.prefix, infill.suffix).line_prefix
        shape = Shaping(infill.prefix, infill.suffix, "", line_prefix)
        generation = await self.backend.generate(infill, replace(params, until=shape.settled))
        for choice in generation.choices:
            text, offset = shape(choice.text)
            choice.tokens = tokens_in(choice.tokens, offset, offset + len(text))
            choice.text = text
        return generation

    async def _shaped_stream(
        self, infill: InfillPrompt, params: SamplingParams
    ) -> AsyncIterator[Delta]:
        generation = await self._shaped(infill, params)
        choice = generation.choices[0]
        yield Delta(choice.text, None, choice.finish_reason, generation.prompt_tokens,
                    generation.completion_tokens)  # fmt: skip

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        if not (request.prefix.strip() or request.suffix.strip()):
            raise InvalidRequest(
                "Both prefix and suffix are empty.", hint="Send the code around the cursor."
            )
        if not 1 <= request.max_completions <= MAX_COMPLETIONS:
            raise InvalidRequest(
                f"max_completions must be between 1 and {MAX_COMPLETIONS}, "
                f"got {request.max_completions}."
            )
        started = time.perf_counter()
        model_prefix, removed = heal_prefix(request.prefix)
        if request.context and request.context.strip():
            model_prefix = f"{request.context.rstrip()}\n\n{model_prefix}"
        params = Sampling(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            n=request.max_completions,
            session=request.session,
        ).resolve(self.defaults)
        line_prefix = cursor_at(request.prefix, request.suffix).line_prefix
        shape = Shaping(request.prefix, request.suffix, removed, line_prefix, request.postprocess)
        if request.postprocess:
            params = replace(params, until=shape.settled)
        generation = await self.backend.generate(InfillPrompt(model_prefix, request.suffix), params)
        best: dict[str, Suggestion] = {}
        for choice in generation.choices:
            text, offset = shape(choice.text)
            if not text.strip():
                continue
            confidence = round(span_confidence(choice.tokens, [(offset, offset + len(text))]), 4)
            if text in best and best[text].confidence >= confidence:
                continue
            kind = suggestion_kind(text, line_prefix, request.language)
            best[text] = Suggestion(text, confidence, kind)
        ranked = sorted(best.values(), key=lambda s: s.confidence, reverse=True)
        return CompletionResult(
            suggestions=ranked,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    def _raw_prompt(self, prompt: str, suffix: str | None) -> TextPrompt | InfillPrompt:
        """An infill prompt for a suffix, or for a prompt written in the served model's
        fill-in-the-middle markers (as editors send them); else the text as it is."""
        if suffix is not None:
            if not (prompt.strip() or suffix.strip()):
                raise InvalidRequest("Both prompt and suffix are empty.")
            return InfillPrompt(prompt, suffix)
        if not prompt.strip():
            raise InvalidRequest("The prompt is empty.")
        fim = self.backend.fim
        if fim is not None and (parts := fim.parse(prompt)) is not None:
            context, prefix, suffix = parts
            return InfillPrompt(prefix, suffix, context)
        return TextPrompt(prompt)
