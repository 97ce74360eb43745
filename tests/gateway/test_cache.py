"""The SQLite cache tier: a miss on a key it never stored costs no database trip, a key stored
by another process is a miss (never a wrong answer), expired entries go."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from codey.gateway import cache
from codey.gateway.cache import SQLiteTier
from codey.store.sqlite import Database


def rows(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [k for (k,) in conn.execute("SELECT key FROM response_cache ORDER BY key")]
    finally:
        conn.close()


async def test_a_stored_answer_comes_back_and_an_unknown_key_skips_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(tmp_path / "c.db")
    tier = SQLiteTier(db)
    await tier.put("k", "completion", {"text": "x"}, ttl=60)
    assert await tier.get("k") == {"text": "x"}

    async def no_trip(work: Any) -> Any:
        raise AssertionError("a miss on an unknown key went to the database")

    monkeypatch.setattr(db, "transact", no_trip)
    assert await tier.get("other") is None
    db.close()


async def test_another_process_writes_are_misses_until_a_restart(tmp_path: Path) -> None:
    ours, theirs = Database(tmp_path / "c.db"), Database(tmp_path / "c.db")
    tier, other = SQLiteTier(ours), SQLiteTier(theirs)
    await other.put("k", "completion", {"text": "theirs"}, ttl=60)
    assert await tier.get("k") is None
    await tier.put("k", "completion", {"text": "ours"}, ttl=60)
    await other.put("k", "completion", {"text": "theirs again"}, ttl=60)
    assert await tier.get("k") == {"text": "theirs again"}  # read from the file, never stale
    with theirs.transaction() as conn:
        conn.execute("DELETE FROM response_cache")
    assert await tier.get("k") is None
    await other.put("k", "completion", {"text": "back"}, ttl=60)
    assert await tier.get("k") is None  # forgotten when found gone
    assert await SQLiteTier(ours).get("k") == {"text": "back"}  # a new start learns it
    ours.close()
    theirs.close()


async def test_expired_entries_are_misses_and_are_swept_with_their_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "_SWEEP_FROM", 4)
    db = Database(tmp_path / "c.db")
    tier = SQLiteTier(db)
    for key in "abc":
        await tier.put(key, "completion", {"k": key}, ttl=-1)  # already expired
    await tier.put("d", "completion", {"k": "d"}, ttl=60)  # the map had 3 keys: no sweep
    assert rows(db.path) == ["a", "b", "c", "d"]
    await tier.put("e", "completion", {"k": "e"}, ttl=60)  # it had 4: sweep
    assert rows(db.path) == ["d", "e"]
    assert await tier.get("a") is None
    assert await tier.get("e") == {"k": "e"}
    await tier.put("f", "completion", {"k": "f"}, ttl=-1)
    db.close()
    reopened = Database(tmp_path / "c.db")
    SQLiteTier(reopened)  # a start drops what has expired
    assert rows(reopened.path) == ["d", "e"]
    reopened.close()
