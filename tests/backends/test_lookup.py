"""Drafts from the history's own n-grams."""

from __future__ import annotations

from codey.backends.lookup import Lookup


def test_the_draft_is_what_followed_the_ends_earlier_occurrence() -> None:
    lookup = Lookup([1, 2, 3, 4, 5, 9, 1, 2, 3], size=8)
    assert lookup.draft(8) == [4, 5, 9, 1, 2, 3]


def test_the_longest_match_wins_over_a_later_shorter_one() -> None:
    # "2 3" last came before 7, but "1 2 3" came before 4.
    lookup = Lookup([1, 2, 3, 4, 0, 2, 3, 7, 0, 1, 2, 3], size=2)
    assert lookup.draft(8) == [4, 0]


def test_the_latest_occurrence_of_the_same_match_wins() -> None:
    lookup = Lookup([5, 6, 1, 5, 6, 2, 5, 6], size=1)
    assert lookup.draft(4) == [2]


def test_no_draft_without_a_match_of_two_tokens_or_without_room() -> None:
    assert Lookup([1, 2, 3, 4, 5], size=4).draft(4) == []
    assert Lookup([1, 2, 1, 2], size=4).draft(0) == []


def test_the_history_grows_with_the_answer() -> None:
    lookup = Lookup([10, 11, 12, 13], size=3)
    assert lookup.draft(3) == []
    lookup.extend([10, 11])
    assert lookup.draft(3) == [12, 13, 10]
    lookup.extend([12, 99])
    assert lookup.draft(3) == []
