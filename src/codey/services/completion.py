"""Code completion: prefix + suffix at the cursor -> a few distinct suggestions, ranked."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
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
from codey.backends.fim import SourceFile
from codey.config import CompletionSettings
from codey.errors import ContextOverflow, InvalidRequest
from codey.services.sampling import Sampling
from codey.services.suggestions import (
    Kind,
    cursor_at,
    drop_prefix_echo,
    heal_prefix,
    misfit,
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
    """Other code the completion should know about, as free text."""
    files: tuple[SourceFile, ...] = ()
    """Other files of the project, least relevant first, shown in the model's repository
    format within `completion.context_tokens`."""
    path: str = ""
    """The path of the file at the cursor, within the project."""
    repo: str = ""
    """The project's name."""
    max_tokens: int | None = None
    """None, here and below, leaves the value to the service's defaults (`[completion]`)."""
    temperature: float | None = None
    postprocess: bool = True
    """Off only to measure what post-processing is worth."""
    drop_misfits: bool = True
    """Leave out suggestions that cannot fit the hole (`suggestions.misfit`); off only to
    measure what that is worth."""
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


@dataclass
class LineDeadline:
    """Ends an answer at a token that breaks a line once `seconds` have passed since its first
    token (llama.cpp's `t_max_predict_ms`), or when `then` says so; crosses into the engine
    process, and keeps its clock there."""

    seconds: float
    then: Callable[[str], bool] | None = None
    started: float = 0.0
    seen: str | None = None
    """The answer as last looked at: what `raw` adds to it is the newest token."""

    def __call__(self, raw: str) -> bool:
        now = time.monotonic()
        if self.seen is None or not raw.startswith(self.seen):  # an answer's first token
            self.started, self.seen = now, ""
        newest, self.seen = raw[len(self.seen) :], raw
        if self.then is not None and self.then(raw):
            return True
        return "\n" in newest and now - self.started >= self.seconds


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
        asked = self._raw_prompt(prompt, suffix)
        if isinstance(asked, InfillPrompt):
            return await self.infill(asked, sampling, shaped=shaped)
        return await self.backend.generate(asked, sampling.resolve(self.defaults))

    def stream_raw(
        self, prompt: str, suffix: str | None, sampling: Sampling, *, shaped: bool = False
    ) -> AsyncIterator[Delta]:
        """`raw`, token by token; shaped, in one piece once it is whole."""
        asked = self._raw_prompt(prompt, suffix)
        if isinstance(asked, InfillPrompt):
            return self.stream_infill(asked, sampling, shaped=shaped)
        return self.backend.stream(asked, sampling.resolve(self.defaults))

    async def infill(
        self,
        infill: InfillPrompt,
        sampling: Sampling,
        *,
        shaped: bool = False,
        line_seconds: float | None = None,
    ) -> Generation:
        """The model's infill at the cursor (its other files within `completion.context_tokens`);
        `shaped` cuts each answer to what fits the cursor and ends decoding there;
        `line_seconds` ends decoding at a line's end once that long has passed since the
        first token (llama.cpp's `t_max_predict_ms`)."""
        infill = self._budgeted(infill)
        shape = None
        if shaped:
            line_prefix = cursor_at(infill.prefix, infill.suffix).line_prefix
            shape = Shaping(infill.prefix, infill.suffix, "", line_prefix)
        params = sampling.resolve(self.defaults)
        if shape is not None or line_seconds is not None:
            until = shape.settled if shape is not None else None
            if line_seconds is not None:
                until = LineDeadline(line_seconds, until)
            params = replace(params, until=until)
        try:
            generation = await self.backend.generate(infill, params)
        except ContextOverflow as overflow:
            generation = await self.backend.generate(infill, _within(params, overflow))
        if shape is not None:
            for choice in generation.choices:
                text, offset = shape(choice.text)
                choice.tokens = tokens_in(choice.tokens, offset, offset + len(text))
                choice.text = text
        return generation

    async def stream_infill(
        self,
        infill: InfillPrompt,
        sampling: Sampling,
        *,
        shaped: bool = False,
        line_seconds: float | None = None,
    ) -> AsyncIterator[Delta]:
        """`infill`, token by token; shaped, in one piece once it is whole."""
        if shaped:
            generation = await self.infill(infill, sampling, shaped=True, line_seconds=line_seconds)
            choice = generation.choices[0]
            yield Delta(choice.text, None, choice.finish_reason, generation.prompt_tokens,
                        generation.completion_tokens, generation.cached_tokens)  # fmt: skip
            return
        infill = self._budgeted(infill)
        params = sampling.resolve(self.defaults)
        if line_seconds is not None:
            params = replace(params, until=LineDeadline(line_seconds))
        deltas = self.backend.stream(infill, params)
        try:
            first = await anext(deltas)
        except ContextOverflow as overflow:
            deltas = self.backend.stream(infill, _within(params, overflow))
            first = await anext(deltas)
        except StopAsyncIteration:
            return
        yield first
        async for delta in deltas:
            yield delta

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
        context = request.context.rstrip() if request.context else ""
        infill = self._budgeted(
            InfillPrompt(
                model_prefix, request.suffix, files=request.files, path=request.path,
                repo=request.repo, lead=f"{context}\n\n" if context else "",
            )
        )  # fmt: skip
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
        generation = await self.backend.generate(infill, params)
        best: dict[str, Suggestion] = {}
        for choice in generation.choices:
            text, offset = shape(choice.text)
            if not text.strip():
                continue
            if request.drop_misfits and misfit(text, request.prefix, request.suffix):
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

    def _budgeted(self, infill: InfillPrompt) -> InfillPrompt:
        """`infill` with its other files held to `completion.context_tokens` and the code
        around the cursor to `completion.prefix_tokens` and `suffix_tokens`."""
        d = self.defaults
        return replace(
            infill,
            files_budget=d.context_tokens if infill.files else None,
            prefix_budget=d.prefix_tokens,
            suffix_budget=d.suffix_tokens,
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


def _within(params: SamplingParams, overflow: ContextOverflow) -> SamplingParams:
    """An infill's budget cut to what the window leaves after the prompt, as llama.cpp's server
    cuts it: editors ask for thousands of tokens (Continue: 4,096) and use a line or two.
    Re-raises when the prompt alone does not fit."""
    room = overflow.context_length - overflow.prompt_tokens
    if room <= 0 or room >= params.max_tokens:
        raise overflow
    return replace(params, max_tokens=room)
