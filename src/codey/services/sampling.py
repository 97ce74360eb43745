"""What a caller asked of the sampler, completed from the service's defaults in Settings."""

from __future__ import annotations

from dataclasses import dataclass

from codey.backends.base import SamplingParams
from codey.config import SamplingDefaults


@dataclass(frozen=True)
class Sampling:
    """The caller's sampling choices; None leaves a value to the service's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    logprobs: bool = True
    """Whether the caller reads log-probabilities (or a confidence made of them)."""
    top_logprobs: int = 0
    session: str | None = None
    """The client or document asking, whose prompt the engine keeps cached for it."""

    def resolve(self, defaults: SamplingDefaults) -> SamplingParams:
        """The engine's parameters: what was asked, and the defaults for the rest."""
        return SamplingParams(
            max_tokens=defaults.max_tokens if self.max_tokens is None else self.max_tokens,
            temperature=defaults.temperature if self.temperature is None else self.temperature,
            top_p=defaults.top_p if self.top_p is None else self.top_p,
            top_k=defaults.top_k if self.top_k is None else self.top_k,
            stop=self.stop,
            seed=self.seed,
            n=self.n,
            logprobs=self.logprobs,
            top_logprobs=self.top_logprobs,
            priority=defaults.priority,
            draft=defaults.draft_tokens,
            session=self.session,
        )
