"""Prompt lookup: drafts for speculative decoding taken from the text the answer already has.

Code repeats itself (identifiers, a signature restated, a line of the prompt rewritten), so the
tokens that followed the last few tokens' earlier occurrence in the prompt or the answer are a
cheap guess at what comes next. The batcher feeds the guess with the answer's next token and
keeps the part the model agrees with; nothing is accepted that the model would not have
sampled, so the answer is the same with or without drafts (up to the rounding of a larger step).
"""

from __future__ import annotations

from collections.abc import Sequence

SHORTEST_MATCH = 2
LONGEST_MATCH = 4


class Lookup:
    """An index of the n-grams of a growing token history, for drafts of at most `size`."""

    def __init__(self, history: Sequence[int], size: int) -> None:
        self.size = size
        self.history: list[int] = list(history)
        self._ends: dict[tuple[int, ...], int] = {}
        """Each n-gram of SHORTEST_MATCH to LONGEST_MATCH tokens -> where it last ended."""
        self._indexed = 0

    def extend(self, tokens: Sequence[int]) -> None:
        self.history.extend(tokens)

    def draft(self, most: int) -> list[int]:
        """Up to `most` tokens that followed the longest earlier occurrence of the history's end."""
        history, end = self.history, len(self.history)
        # Index every n-gram that ends before the current end, so the end finds an earlier one.
        for stop in range(max(self._indexed, SHORTEST_MATCH), end):
            for n in range(SHORTEST_MATCH, min(LONGEST_MATCH, stop) + 1):
                self._ends[tuple(history[stop - n : stop])] = stop
        self._indexed = max(self._indexed, end)
        most = min(most, self.size)
        if most <= 0:
            return []
        for n in range(min(LONGEST_MATCH, end), SHORTEST_MATCH - 1, -1):
            start = self._ends.get(tuple(history[end - n :]))
            if start is not None:
                return history[start : start + most]
        return []
