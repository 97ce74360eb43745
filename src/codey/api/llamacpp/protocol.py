"""llama.cpp's server's /infill, as the editor plugins llama.vscode and llama.vim call it.

The code around the cursor is `input_prefix` + `prompt` (the cursor line so far) and
`input_suffix`; `input_extra` holds chunks of other files, shown to the model in its repository
format and kept in the engine's cache between keystrokes. `n_predict: 0` only reads the prompt
into the cache. Fields llama.cpp reads for its own sampler chain (`samplers`, `id_slot`,
`cache_prompt`, ...) are accepted and left to codey's engine, which caches every prompt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from pydantic.json_schema import JsonDict

from codey.api.numbers import WHOLE
from codey.backends.base import Choice, Delta, Generation, InfillPrompt
from codey.backends.fim import SourceFile
from codey.config import Service
from codey.errors import InvalidRequest
from codey.gateway.job import Answer, Dialect, Job
from codey.services import Services
from codey.services.completion import MAX_COMPLETIONS
from codey.services.sampling import Sampling

MAX_STOPS = 16
MAX_CHUNKS = 64


class _Body(BaseModel):
    # The plugins send llama.cpp's whole parameter set; what codey has no use for is ignored.
    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)


class ExtraChunk(_Body):
    """A chunk of another file (llama.vim's ring buffer, llama.vscode's context)."""

    text: str
    filename: str = ""


_SOME_CODE: JsonDict = {
    "anyOf": [
        {"required": ["n_predict"], "properties": {"n_predict": {"const": 0}}},
        {"required": ["input_prefix"], "properties": {"input_prefix": {"pattern": r"\S"}}},
        {"required": ["prompt"], "properties": {"prompt": {"pattern": r"\S"}}},
        {"required": ["input_suffix"], "properties": {"input_suffix": {"pattern": r"\S"}}},
    ]
}
_ONE_STREAMED: JsonDict = {
    "anyOf": [
        {"properties": {"stream": {"const": False}}},
        {"properties": {"n_cmpl": {"const": 1}}},
    ]
}


class InfillRequest(_Body, Job):
    # Code on some side of the cursor, unless the request only warms the cache.
    # One answer at a time is streamed.
    model_config = ConfigDict(json_schema_extra={"allOf": [_SOME_CODE, _ONE_STREAMED]})
    service: ClassVar[Service] = "completion"
    dialect: ClassVar[Dialect] = "llamacpp"

    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[ExtraChunk] = Field(default_factory=list, max_length=MAX_CHUNKS)
    prompt: str = Field(default="", description="The cursor line up to the cursor.")
    n_predict: Annotated[StrictInt, Field(ge=-1, le=4096), WHOLE] = Field(
        default=-1, description="Tokens at most; -1: the service's default; 0: only cache."
    )
    n_cmpl: Annotated[StrictInt, Field(ge=1, le=MAX_COMPLETIONS), WHOLE] = Field(
        default=1, description="Answers; more than one comes back as an array."
    )
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_k: Annotated[StrictInt, Field(ge=0), WHOLE] | None = None
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, max_length=MAX_STOPS)
    seed: Annotated[StrictInt, Field(ge=-1), WHOLE] | None = None
    stream: bool = False
    t_max_predict_ms: Annotated[StrictInt, Field(ge=0), WHOLE] = Field(
        default=0,
        description="Once this long has passed since the first token, stop at the end of a "
        "line (0: no limit).",
    )
    response_fields: list[str] | None = Field(
        default=None, description="Only these fields ('timings/prompt_n' reaches inside)."
    )
    model: str | None = None
    postprocess: bool = Field(
        default=True,
        description="codey: cut the answer to the code that fits the cursor, as native "
        "suggestions are, and stop decoding there; false gives the model's raw text.",
    )

    def asked_model(self) -> str | None:
        return self.model or None  # llama.vim sends "" when no model is configured

    def asked_temperature(self) -> float | None:
        return self.temperature

    def billed_text(self) -> str:
        extra = "".join(chunk.text for chunk in self.input_extra)
        return extra + self.input_prefix + self.prompt + self.input_suffix

    def cache_request(self) -> dict[str, Any] | None:
        if self.n_predict == 0:
            return None  # a warm-up must reach the engine to fill its cache
        return self.model_dump()

    def to_prompt(self) -> InfillPrompt:
        prefix = self.input_prefix + self.prompt
        if self.n_predict != 0 and not (prefix.strip() or self.input_suffix.strip()):
            raise InvalidRequest(
                "input_prefix, prompt and input_suffix are all empty.",
                hint="Send the code around the cursor.",
            )
        files = tuple(SourceFile(c.filename, c.text) for c in self.input_extra if c.text.strip())
        return InfillPrompt(prefix, self.input_suffix, files=files)

    def to_sampling(self) -> Sampling:
        return Sampling(
            max_tokens=None if self.n_predict < 0 else self.n_predict,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            stop=tuple(self.stop),
            seed=None if self.seed is None or self.seed < 0 else self.seed,
            n=self.n_cmpl,
            logprobs=False,  # this dialect answers with no probabilities
        )

    @property
    def line_seconds(self) -> float | None:
        return self.t_max_predict_ms / 1000 if self.t_max_predict_ms else None

    async def run(self, services: Services) -> Answer:
        generation = await services.completion.infill(
            self.to_prompt(),
            self.to_sampling(),
            shaped=self.postprocess and self.n_predict != 0,
            line_seconds=self.line_seconds,
        )
        settings = self.settings(services)
        results = [
            self.pick(result(i, choice, generation, settings))
            for i, choice in enumerate(generation.choices)
        ]
        text = "".join(c.text for c in generation.choices)
        # One result is answered as an object, more as an array (`rendered`).
        return Answer({"results": results}, generation.prompt_tokens,
                      generation.completion_tokens, text)  # fmt: skip

    def run_stream(self, services: Services) -> AsyncIterator[Delta]:
        if self.n_cmpl > 1:
            raise InvalidRequest("Only one answer (n_cmpl 1) can be streamed.")
        return services.completion.stream_infill(
            self.to_prompt(),
            self.to_sampling(),
            shaped=self.postprocess and self.n_predict != 0,
            line_seconds=self.line_seconds,
        )

    def settings(self, services: Services) -> dict[str, Any]:
        """llama.cpp's `generation_settings`, as far as codey has them."""
        params = self.to_sampling().resolve(services.completion.defaults)
        return {
            "n_ctx": services.completion.backend.context_length,
            "n_predict": params.max_tokens,
            "temperature": params.temperature,
            "top_k": params.top_k,
            "top_p": params.top_p,
            "stop": list(params.stop),
            "n_cmpl": params.n,
            "stream": self.stream,
        }

    def pick(self, full: dict[str, Any]) -> dict[str, Any]:
        """The fields asked for in `response_fields` (all without it), as llama.cpp picks
        them: 'a/b' is the field b inside a, under the key 'a/b'."""
        if self.response_fields is None:
            return full
        picked: dict[str, Any] = {}
        for path in self.response_fields:
            value: Any = full
            for key in path.split("/"):
                value = value.get(key) if isinstance(value, dict) else None
            if path and value is not None:
                picked[path] = value
        return picked


def result(
    index: int, choice: Choice, generation: Generation, settings: dict[str, Any]
) -> dict[str, Any]:
    """One answer in llama.cpp's /infill result shape."""
    predicted = len(choice.tokens)
    read = generation.prompt_tokens - choice.cached_tokens
    prompt_ms, predicted_ms = choice.prompt_seconds * 1000, choice.decode_seconds * 1000
    stop_type = {"stop": "eos", "length": "limit"}.get(choice.finish_reason, "none")
    return {
        "index": index,
        "content": choice.text,
        "tokens": [],
        "id_slot": -1,
        "stop": True,
        "tokens_predicted": predicted,
        "tokens_evaluated": generation.prompt_tokens,
        "generation_settings": settings,
        "has_new_line": "\n" in choice.text,
        "truncated": False,
        "stop_type": stop_type,
        "stopping_word": "",
        "tokens_cached": choice.cached_tokens,
        "timings": {
            "cache_n": choice.cached_tokens,
            "prompt_n": read,
            "prompt_ms": round(prompt_ms, 3),
            "prompt_per_token_ms": round(prompt_ms / read, 3) if read else 0.0,
            "prompt_per_second": round(read / prompt_ms * 1000, 3) if prompt_ms else 0.0,
            "predicted_n": predicted,
            "predicted_ms": round(predicted_ms, 3),
            "predicted_per_token_ms": round(predicted_ms / predicted, 3) if predicted else 0.0,
            "predicted_per_second": (
                round(predicted / predicted_ms * 1000, 3) if predicted_ms else 0.0
            ),
        },
    }


def rendered(body: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]]:
    """An answer's results as llama.cpp sends them: one object, or an array of several."""
    results: list[dict[str, Any]] = body["results"]
    return results[0] if len(results) == 1 else results
