"""The one interface every engine implements: generate (or stream) from a prompt.

A prompt is one of three shapes, so that chat, raw completion and fill-in-the-middle share a
single verb; each backend turns the shape into whatever its engine takes.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from codey.backends.fim import FimTemplate, SourceFile, as_plain_code

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class ChatPrompt:
    """Messages rendered through the model's own chat template."""

    messages: Sequence[Message]


@dataclass(frozen=True)
class TextPrompt:
    """Raw text continued as is."""

    text: str


@dataclass(frozen=True)
class InfillPrompt:
    """Fill the hole between `prefix` and `suffix`."""

    prefix: str
    suffix: str
    context: str = ""
    """What comes before the fill-in-the-middle prompt (other files, in the model's repository
    format), as the caller wrote it: its special-token text is the model's tokens."""
    files: tuple[SourceFile, ...] = ()
    """Other files of the project, least relevant first, shown in the model family's
    repository format; engines drop them from the front to keep within `files_budget`."""
    path: str = ""
    """The path of the file at the cursor, as the repository format names it."""
    repo: str = ""
    """The project's name, as the repository format names it."""
    files_budget: int | None = None
    """Tokens the files may take at most; None: whatever the window leaves."""
    prefix_budget: int | None = None
    """Tokens of the prefix at most: engines keep the whole lines nearest the cursor that fit
    (and always the cursor's line); None: all of it."""
    suffix_budget: int | None = None
    """Tokens of the suffix at most, whole lines from the cursor on; None: all of it."""
    lead: str = ""
    """Plain text right before the prefix, inside the fill-in-the-middle prompt (a native
    request's free-text context): tokenized as text and kept whole, since `prefix_budget`
    is the code's."""

    @property
    def before_cursor(self) -> str:
        """What the model reads before the cursor: `lead`, then the prefix."""
        return self.lead + self.prefix

    def preamble(self, template: FimTemplate | None) -> str:
        """`context` and the files as one text, for engines that take markers as text: the
        files in `template`'s repository format, or as plain code without one."""
        if template is not None:
            return self.context + template.render_repo(self.files, self.path, self.repo)
        return self.context + "".join(as_plain_code(f) for f in self.files)


Prompt = ChatPrompt | TextPrompt | InfillPrompt


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. `n > 1` at temperature 0 gives the n most likely distinct openings."""

    max_tokens: int = 256
    temperature: float = 0.2
    top_p: float = 0.95
    top_k: int = 40
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    logprobs: bool = True
    """Whether the caller reads each token's log-probability (confidence, logprobs); without
    it the embedded engine spares itself a pass over the whole vocabulary per token."""
    top_logprobs: int = 0
    priority: int = 1
    """Scheduling: engines that queue run lower priorities first (completion is 0)."""
    session: str | None = None
    """The client or document asking, so that an engine can keep its prompt cached for it."""
    draft: int = 0
    """Speculative decoding by prompt lookup: guess up to this many tokens at a step from the
    prompt's and answer's own n-grams; 0 guesses none. Answers are the same either way."""
    background: bool = False
    """Batch work: engines that schedule run it only when no interactive request needs them."""
    until: Callable[[str], bool] | None = None
    """Ends an answer (finish "stop") once it returns True for the text so far; picklable,
    since it may cross into an engine process. Engines that cannot ask it decode on."""


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log-probability under the model (temperature 1); None
    where nobody asked for it (`SamplingParams.logprobs`)."""

    text: str
    logprob: float | None
    top: tuple[tuple[str, float], ...] = ()


@dataclass
class Choice:
    """One answer to a prompt, with every token it is made of."""

    text: str
    tokens: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    cached_tokens: int = 0
    """Prompt tokens the engine's cache held when this answer began."""
    prompt_seconds: float = 0.0
    """From the request's arrival at the engine to this answer's first token being asked for
    (waiting and reading the prompt); 0.0 where the engine does not say."""
    decode_seconds: float = 0.0
    """From then to the answer's end."""

    @property
    def confidence(self) -> float:
        return confidence_of(self.tokens)


@dataclass
class Generation:
    """All the answers to one prompt, with real token counts."""

    choices: list[Choice]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    """Prompt tokens the engine did not read again: its cache held them."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Delta:
    """One streamed piece of an answer; the last one carries the finish reason and usage."""

    text: str
    token: TokenLogprob | None = None
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


def confidence_of(tokens: Sequence[TokenLogprob]) -> float:
    """Geometric-mean probability of the tokens whose log-probability is known:
    exp(mean log p); 0.0 for none."""
    known = [t.logprob for t in tokens if t.logprob is not None]
    if not known:
        return 0.0
    return math.exp(sum(known) / len(known))


def deltas_for(text: str, tokens: Sequence[TokenLogprob]) -> list[Delta]:
    """A streamed chunk as deltas: one per token when the tokens spell its text, else one."""
    if not text:
        return []
    if tokens and "".join(t.text for t in tokens) == text:
        return [Delta(t.text, t) for t in tokens]
    return [Delta(text, tokens[0] if len(tokens) == 1 else None)]


def tokens_in(tokens: Sequence[TokenLogprob], start: int, end: int) -> list[TokenLogprob]:
    """The tokens whose text overlaps [start, end) of the answer."""
    inside, offset = [], 0
    for token in tokens:
        token_end = offset + len(token.text)
        if token_end > start and offset < end:
            inside.append(token)
        offset = token_end
    return inside


def span_confidence(tokens: Sequence[TokenLogprob], spans: Sequence[tuple[int, int]]) -> float:
    """Confidence of the tokens whose text overlaps any [start, end) span of the answer."""
    inside, offset = [], 0
    for token in tokens:
        token_end = offset + len(token.text)
        if any(token_end > start and offset < end for start, end in spans):
            inside.append(token)
        offset = token_end
    return confidence_of(inside)


class Backend(ABC):
    """An engine that turns prompts into generations."""

    name: str
    """Short backend type, such as 'llamacpp'."""
    model_id: str
    """The model this backend serves."""
    fim: FimTemplate | None = None
    """The served model's fill-in-the-middle markers, when the backend knows them: a raw
    completion prompt written in them is taken as an infill prompt."""

    @property
    def state(self) -> str:
        """'ready', or what keeps the engine from answering ('restarting', 'failed', ...)."""
        return "ready"

    @property
    @abstractmethod
    def context_length(self) -> int:
        """Tokens the engine can hold: prompt plus answer."""

    @abstractmethod
    async def count_tokens(self, prompt: Prompt) -> int:
        """Tokens the prompt takes once rendered for the engine."""

    @abstractmethod
    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        """All `params.n` answers at once."""

    @abstractmethod
    def stream(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        """One answer, token by token; closing the iterator stops the engine."""

    async def probe(self) -> None:
        """Raise a CodeyError unless the engine answers; by default, by counting a token."""
        await self.count_tokens(TextPrompt("ping"))

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine."""
