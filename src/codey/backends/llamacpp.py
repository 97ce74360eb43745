"""The embedded backend: a GGUF model run by llama.cpp in an engine process of its own.

Prompts are rendered and counted here, with the model's vocabulary; the tokens go to the engine
process (engine_process.py), which answers token by token.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from codey.backends.base import (
    Backend,
    ChatPrompt,
    Delta,
    Generation,
    InfillPrompt,
    Prompt,
    SamplingParams,
    TextPrompt,
)
from codey.backends.engine_process import EngineProcess, EngineSpec, RestartPolicy
from codey.backends.fim import FIM_TEMPLATES, FimTemplate, Pieces, SourceFile, detect_family
from codey.backends.registry import BackendContext, register
from codey.backends.vocabulary import Vocabulary
from codey.config import Deployment, ModelSettings
from codey.errors import ConfigError, ContextOverflow, InvalidRequest
from codey.provision.assemble import Progress, locate_model
from codey.provision.catalogue import DEFAULT, CatalogueModel
from codey.provision.gguf_header import GGUFHeader, read_header

Rendered = tuple[list[int], tuple[str, ...]]
PREFIX_LINE_STEP = 8
"""Lines a prefix over its budget loses at a time."""


class LlamaCppBackend(Backend):
    """Chat through the model's own chat template, raw text, and fill-in-the-middle."""

    name = "llamacpp"

    def __init__(
        self,
        engine: EngineProcess,
        vocabulary: Vocabulary,
        model_id: str,
        family: str | None = None,
        header: GGUFHeader | None = None,
    ) -> None:
        self.engine = engine
        self.vocabulary = vocab = vocabulary
        self.model_id = model_id
        self.header = header
        template = vocab.metadata.get("tokenizer.chat_template")
        self._chat = (
            Jinja2ChatFormatter(
                template=template,
                eos_token=vocab.token_text(vocab.eos),
                bos_token=vocab.token_text(vocab.bos),
            )
            if template
            else None
        )
        family = family or detect_family(lambda s: len(vocab.tokenize(s, special=True)) == 1)
        if family is not None and family not in FIM_TEMPLATES:
            raise ConfigError(
                f"Unknown fill-in-the-middle family {family!r}.",
                hint=f"Use one of {', '.join(FIM_TEMPLATES)}.",
            )
        self.fim: FimTemplate | None = FIM_TEMPLATES[family] if family else None
        self.family = family

    @classmethod
    def load(
        cls,
        settings: ModelSettings,
        progress: Progress | None = None,
        registry_model: CatalogueModel | None = None,
    ) -> LlamaCppBackend:
        """Locate and verify the model file (`registry_model`, else `settings.path`, else the
        default registry model), then start the engine process that runs it."""
        path = None if registry_model else settings.path
        registry_model = registry_model or DEFAULT
        model = locate_model(path, settings.sha256, settings.cache_dir, progress, registry_model)
        header = read_header(model.path)
        vocabulary = Vocabulary(model.path)
        spec = EngineSpec.of(model.path, settings)
        policy = RestartPolicy(
            restart_limit=settings.restart_limit, restart_window=settings.restart_window_seconds
        )
        engine = EngineProcess(spec, max_queued_tokens=settings.max_queued_tokens, policy=policy)
        engine.start()
        model_id = model.path.stem if path else registry_model.name
        return cls(engine, vocabulary, model_id, settings.family, header)

    @property
    def context_length(self) -> int:
        return int(self.engine.info.get("context_length", self.engine.spec.context_length))

    @property
    def state(self) -> str:
        return self.engine.state

    @property
    def queue_depth(self) -> int:
        return self.engine.depth

    @property
    def decode_rate(self) -> float:
        return self.engine.decode_rate

    async def count_tokens(self, prompt: Prompt) -> int:
        tokens, _ = await asyncio.to_thread(self.render, prompt)
        return len(tokens)

    async def generate(self, prompt: Prompt, params: SamplingParams) -> Generation:
        tokens, stop = await self._prepare(prompt, params)
        choices = await self.engine.run(tokens, params, stop + params.stop)
        cached = choices[0].cached_tokens if choices else 0
        return Generation(choices, len(tokens), sum(len(c.tokens) for c in choices), cached)

    async def stream(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[Delta]:
        tokens, stop = await self._prepare(prompt, params)
        single = SamplingParams(**{**params.__dict__, "n": 1})
        async for delta in self.engine.stream(tokens, single, stop + params.stop):
            yield delta

    async def close(self) -> None:
        await asyncio.to_thread(self.engine.close)
        self.vocabulary.close()

    async def _prepare(self, prompt: Prompt, params: SamplingParams) -> Rendered:
        room = self.context_length - params.max_tokens
        tokens, stop = await asyncio.to_thread(self.render, prompt, room)
        if not tokens:
            raise InvalidRequest("The prompt is empty.")
        if len(tokens) + params.max_tokens > self.context_length:
            raise ContextOverflow(len(tokens), params.max_tokens, self.context_length)
        return tokens, stop

    def render(self, prompt: Prompt, room: int | None = None) -> Rendered:
        """The tokens the engine receives for `prompt`, and the stop strings its format adds;
        an infill prompt's other files are cut to fit in `room` tokens with the rest."""
        engine = self.vocabulary
        if isinstance(prompt, ChatPrompt):
            if self._chat is None:
                raise InvalidRequest(f"The model {self.model_id} has no chat template.")
            return self._render_chat(prompt)
        if isinstance(prompt, TextPrompt):
            # A raw prompt is the caller's own, special tokens included (as llama.cpp's server
            # and vLLM read it).
            return engine.tokenize(prompt.text, special=True, add_bos=True), ()
        if isinstance(prompt, InfillPrompt):
            if self.fim is None:
                raise InvalidRequest(
                    f"The model {self.model_id} has no fill-in-the-middle tokens.",
                    hint="Set model.family in the config if it uses a known template.",
                )
            fim = self.fim
            # The code around the cursor is tokenized without special tokens, so that it
            # cannot forge sentinels; the context before it is the caller's own.
            context = engine.tokenize(prompt.context, special=True) if prompt.context else []
            cursor = (
                engine.tokenize(fim.prefix, special=True)
                + engine.tokenize(prompt.lead, special=False)
                + self._prefix_tokens(prompt.prefix, prompt.prefix_budget)
                + engine.tokenize(fim.suffix, special=True)
                + self._suffix_tokens(prompt.suffix, prompt.suffix_budget)
                + engine.tokenize(fim.middle, special=True)
            )
            if prompt.files:
                room = self.context_length if room is None else room
                context += self._files(prompt, room - len(context) - len(cursor))
            return context + cursor, fim.stop
        raise TypeError(f"unknown prompt type {type(prompt).__name__}")

    def _prefix_tokens(self, prefix: str, budget: int | None) -> list[int]:
        """The prefix's tokens, or those of its last whole lines that fit in `budget` (the
        cursor's line always). Lines go PREFIX_LINE_STEP at a time from the start, so that
        typing at the cursor keeps the prompt's start, and with it the slot's cached cells,
        until the budget forces another cut."""
        tokens = self.vocabulary.tokenize(prefix, special=False)
        if budget is None or len(tokens) <= budget:
            return tokens
        lines = prefix.splitlines(keepends=True)
        cuts = range(PREFIX_LINE_STEP, len(lines), PREFIX_LINE_STEP)
        # Fewer tokens the more lines go: the first cut that fits, else only the cursor's line.
        first = bisect.bisect_left(
            cuts, True, key=lambda cut: len(self._text_tokens(lines[cut:])) <= budget
        )
        return self._text_tokens(lines[cuts[first] :] if first < len(cuts) else lines[-1:])

    def _suffix_tokens(self, suffix: str, budget: int | None) -> list[int]:
        """The suffix's tokens, or those of its first whole lines that fit in `budget` (the
        rest of the cursor's line always)."""
        tokens = self.vocabulary.tokenize(suffix, special=False)
        if budget is None or len(tokens) <= budget:
            return tokens
        lines = suffix.splitlines(keepends=True)
        fits = _lines_within(lines, budget, lambda start: len(self._text_tokens(start)))
        return self._text_tokens(lines[: max(fits, 1)])

    def _text_tokens(self, lines: list[str]) -> list[int]:
        return self.vocabulary.tokenize("".join(lines), special=False)

    def _files(self, prompt: InfillPrompt, room: int) -> list[int]:
        """The other files in the repository format, the nearest to the cursor (the last)
        first, until `room` and the prompt's budget are full; the file that overflows keeps
        the whole lines of its start that fit."""
        fim = self.fim
        assert fim is not None

        def tokens_of(pieces: Pieces) -> list[int]:
            tokenize = self.vocabulary.tokenize
            return [t for text, special in pieces for t in tokenize(text, special=special)]

        def part(file: SourceFile) -> list[int]:
            return tokens_of(fim.file_part(file))

        head, _, tail = fim.repo_parts((), prompt.path, prompt.repo)
        first, last = tokens_of(head), tokens_of(tail)
        budget = room if prompt.files_budget is None else min(room, prompt.files_budget)
        left = budget - len(first) - len(last)
        kept: list[int] = []
        for file in reversed(prompt.files):
            tokens = part(file)
            if len(tokens) > left:
                lines = file.text.splitlines(keepends=True)
                fits = _lines_within(lines, left, functools.partial(_part_size, part, file.path))
                if fits:  # at least one line of the file
                    kept = part(SourceFile(file.path, "".join(lines[:fits]))) + kept
                break
            kept, left = tokens + kept, left - len(tokens)
        return first + kept + last if kept else []

    def _render_chat(self, prompt: ChatPrompt) -> Rendered:
        """The chat template's tokens, with what each message says as plain text: a message
        that spells `<|im_start|>` gets those characters, not the template's token."""
        assert self._chat is not None
        marks = [f"\x00{i}\x00" for i in range(len(prompt.messages))]
        messages: list[Any] = [
            {"role": m.role, "content": mark}
            for m, mark in zip(prompt.messages, marks, strict=True)
        ]
        rendered = self._chat(messages=messages)
        stop = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop or ""]
        tokenize = self.vocabulary.tokenize
        tokens, text = [], rendered.prompt
        for message, mark in zip(prompt.messages, marks, strict=True):
            before, found, text = text.partition(mark)
            if not found:
                raise InvalidRequest(
                    f"The chat template of {self.model_id} does not show every message as it was."
                )
            tokens += tokenize(before, special=True) + tokenize(message.content, special=False)
        return tokens + tokenize(text, special=True), tuple(s for s in stop if s)


def _lines_within(lines: list[str], budget: int, size: Callable[[list[str]], int]) -> int:
    """How many of `lines`, from the first, fit in `budget` tokens as `size` counts them."""
    fits = bisect.bisect(range(len(lines) + 1), budget, key=lambda n: size(lines[:n]))
    return max(fits - 1, 0)  # 0 also when not even an empty start fits (a file's header)


def _part_size(part: Callable[[SourceFile], list[int]], path: str, lines: list[str]) -> int:
    """Tokens of the file at `path` holding only `lines`, as `part` renders it."""
    return len(part(SourceFile(path, "".join(lines))))


@register("llamacpp")
def _llamacpp(deployment: Deployment, context: BackendContext) -> Backend:
    return context.embedded(deployment.model_id)
