"""What holds between an answer computed alone and the same answer batched with others."""

from __future__ import annotations

from codey.backends.base import Choice


def assert_same_answer(alone: Choice, batched: Choice) -> None:
    """Batched steps round differently (log-probabilities move by a few hundredths), so a near
    tie may tip the other way; up to there, the answer is the same, token by token."""
    shared = 0
    for a, b in zip(alone.tokens, batched.tokens, strict=False):
        if a.text != b.text:
            break
        assert abs(a.logprob - b.logprob) < 0.15, (a, b)
        shared += 1
    assert shared >= 2, (alone.text, batched.text)
