"""A backend that answers from a script: the layers above the engine, run without a model.

For tests and for trying codey's API on a machine without the model. Its tokens are its own:
a word with the blanks before it, or one other character, so that counts, stops, streaming and
log-probabilities behave as they do with a real engine, and every figure can be checked.

    [[models.fake.deployments]]
    backend = "fake"
    url = "script.json"   # optional: {"rules": [{"contains": "...", "answer": "..."}]}
    context_length = 4096

The first rule whose `contains` occurs in the prompt gives the answer; otherwise the answer
depends on the prompt's shape (chat, text or fill-in-the-middle). The i-th answer of n opens
with "# i" so that n answers are distinct. Each token's log-probability is scripted from its
text and position (crc32), the same in every process. A rule may also fix its tokens'
log-probability ("logprob": a certain or an unsure answer) and wait before each token
("delay", seconds: a slow answer that holds its deployment, as a long decode does).
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

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
)
from codey.backends.fim import FIM_TEMPLATES
from codey.backends.registry import BackendContext, register
from codey.config import Deployment
from codey.errors import ContextOverflow, InvalidRequest

_TOKEN = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
DEFAULTS = {
    ChatPrompt: "Here it is:\n\n```python\ndef answer():\n    return 42\n```\n",
    TextPrompt: " = 42\n",
    InfillPrompt: "return 42",
}


@dataclass(frozen=True)
class Rule:
    """An answer for prompts that contain `contains`."""

    contains: str
    answer: str
    logprob: float | None = None
    """Every token's log-probability; None scripts each from its text and position."""
    delay: float = 0.0
    """Seconds before each token."""


def tokens_of(text: str) -> list[str]:
    """The fake's tokenizer; the pieces always spell the text."""
    return _TOKEN.findall(text)


def logprob_of(piece: str, position: int) -> float:
    """A log-probability in (-2, 0], fixed by the piece and where it stands."""
    return -(zlib.crc32(f"{position}:{piece}".encode()) % 2000) / 1000


class FakeBackend(Backend):
    name = "fake"
    fim = FIM_TEMPLATES["qwen"]  # it stands in for the embedded model, markers included

    def __init__(
        self,
        model_id: str = "fake",
        rules: list[Rule] | None = None,
        context_length: int = 4096,
    ) -> None:
        self.model_id = model_id
        self.rules = rules or []
        self._context_length = context_length
        self.prompts: list[Prompt] = []
        """Every prompt received, for tests to read."""
        self.params: list[SamplingParams] = []
        """The parameters each prompt came with."""

    @classmethod
    def from_deployment(cls, deployment: Deployment) -> FakeBackend:
        rules: list[Rule] = []
        if deployment.url:
            script = json.loads(Path(deployment.url).read_text())
            rules = [Rule(**rule) for rule in script.get("rules", [])]
        return cls(deployment.model_id or "fake", rules, deployment.context_length or 4096)

    @property
    def context_length(self) -> int:
        return self._context_length

    async def count_tokens(self, prompt: Prompt) -> int:
        return len(tokens_of(_text_of(prompt)))

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        prompt_tokens = self._admit(prompt, params)
        rule = self._rule(prompt)
        choices = [self._choice(prompt, params, i) for i in range(params.n)]
        if rule.delay:
            await asyncio.sleep(rule.delay * max(len(c.tokens) for c in choices))
        return Generation(choices, prompt_tokens, sum(len(c.tokens) for c in choices))

    async def stream(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        prompt_tokens = self._admit(prompt, params)
        delay = self._rule(prompt).delay
        choice = self._choice(prompt, params, 0)
        for token in choice.tokens:
            if delay:
                await asyncio.sleep(delay)
            yield Delta(token.text, token)
        yield Delta("", None, choice.finish_reason, prompt_tokens, len(choice.tokens))

    def _admit(self, prompt: Prompt, params: SamplingParams) -> int:
        text = _text_of(prompt)
        if not text.strip():
            raise InvalidRequest("The prompt is empty.")
        count = len(tokens_of(text))
        if count + params.max_tokens > self._context_length:
            raise ContextOverflow(count, params.max_tokens, self._context_length)
        self.prompts.append(prompt)
        self.params.append(params)
        return count

    def _rule(self, prompt: Prompt) -> Rule:
        text = _text_of(prompt)
        default = Rule("", DEFAULTS[type(prompt)])
        return next((r for r in self.rules if r.contains in text), default)

    def _choice(self, prompt: Prompt, params: SamplingParams, index: int) -> Choice:
        rule = self._rule(prompt)
        answer = rule.answer
        if index:
            answer = f"# {index}\n{answer}"
        pieces = tokens_of(answer)
        finish: FinishReason = "stop"
        if len(pieces) > params.max_tokens:
            pieces, finish = pieces[: params.max_tokens], "length"
        out = "".join(pieces)
        cut = min((i for s in params.stop if s and (i := out.find(s)) != -1), default=None)
        if cut is not None:
            pieces, finish = _within(pieces, cut), "stop"
        if params.until is not None:  # as an engine asks it: after each token
            for end in range(1, len(pieces) + 1):
                if params.until("".join(pieces[:end])):
                    pieces, finish = pieces[:end], "stop"
                    break
        tokens = [
            self._token(p, i, params.top_logprobs, rule.logprob)
            if params.logprobs
            else TokenLogprob(p, None)
            for i, p in enumerate(pieces)
        ]
        return Choice("".join(pieces), tokens, finish)

    @staticmethod
    def _token(piece: str, position: int, top: int, fixed: float | None) -> TokenLogprob:
        logprob = logprob_of(piece, position) if fixed is None else fixed
        others = [(f"<alt{k}>", logprob - 0.5 * k) for k in range(1, top)]
        return TokenLogprob(piece, logprob, tuple([(piece, logprob), *others]) if top else ())


def _within(pieces: list[str], length: int) -> list[str]:
    """The pieces that spell the first `length` characters, the last one cut to fit."""
    kept, offset = [], 0
    for piece in pieces:
        if offset >= length:
            break
        kept.append(piece[: length - offset])
        offset += len(piece)
    return kept


def _text_of(prompt: Prompt) -> str:
    if isinstance(prompt, ChatPrompt):
        return "\n".join(f"{m.role}: {m.content}" for m in prompt.messages)
    if isinstance(prompt, TextPrompt):
        return prompt.text
    return f"{prompt.preamble(FIM_TEMPLATES['qwen'])}{prompt.before_cursor}<fill>{prompt.suffix}"


@register("fake")
def _fake(deployment: Deployment, context: BackendContext) -> Backend:
    return FakeBackend.from_deployment(deployment)
