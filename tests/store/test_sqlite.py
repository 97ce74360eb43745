"""The database's writer thread: group commits from asyncio, each job isolated, in order,
durable on return, drained by close()."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from codey.store.sqlite import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "t.db")
    with database.transaction() as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL)")
    yield database
    database.close()


def insert(n: int) -> object:
    def work(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (n) VALUES (?)", (n,))
        return n * 2

    return work


def rows(path: Path) -> list[int]:
    """The committed rows, as another connection (another process) sees them."""
    conn = sqlite3.connect(path)
    try:
        return [n for (n,) in conn.execute("SELECT n FROM t ORDER BY id")]
    finally:
        conn.close()


def count_groups(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of each group transaction the writer commits."""
    sizes: list[int] = []
    commit = db._commit

    def counted(jobs: list) -> list:  # type: ignore[type-arg]
        sizes.append(len(jobs))
        return commit(jobs)

    monkeypatch.setattr(db, "_commit", counted)
    return sizes


async def test_concurrent_jobs_share_a_transaction_and_each_gets_its_result(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = count_groups(db, monkeypatch)
    results = await asyncio.gather(*(db.transact(insert(n)) for n in range(500)))
    assert results == [n * 2 for n in range(500)]
    assert sizes == [500]  # submitted in one turn of the loop: one transaction
    assert rows(db.path) == list(range(500))  # committed, in submission order


async def test_a_failing_job_loses_only_its_own_writes(db: Database) -> None:
    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (n) VALUES (2)")
        raise ValueError("no")

    def bad_sql(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO nowhere VALUES (1)")

    results = await asyncio.gather(
        db.transact(insert(1)),
        db.transact(half_then_fail),
        db.transact(insert(3)),
        db.transact(bad_sql),
        db.transact(insert(5)),
        return_exceptions=True,
    )
    assert results[0::2] == [2, 6, 10]
    assert isinstance(results[1], ValueError)
    assert isinstance(results[3], sqlite3.OperationalError)
    assert rows(db.path) == [1, 3, 5]


async def test_order_is_kept_across_groups(db: Database) -> None:
    async def later(n: int) -> int:
        await asyncio.sleep(0.001 * (n % 7))  # spread over several turns and groups
        return await db.transact(insert(n))

    await asyncio.gather(*(later(n) for n in range(200)))
    committed = rows(db.path)
    assert sorted(committed) == list(range(200))
    # a job submitted after another's result came back is committed after it
    first = await db.transact(insert(1000))
    second = await db.transact(insert(1001))
    assert (first, second) == (2000, 2002)
    assert rows(db.path)[-2:] == [1000, 1001]


async def test_synchronous_transactions_take_turns_with_the_writer(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO t (n) VALUES (0)")

    def bump(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE t SET n = n + 1 WHERE id = 1")

    def bump_from_a_thread() -> None:
        for _ in range(200):
            with db.transaction() as conn:
                bump(conn)

    thread = threading.Thread(target=bump_from_a_thread)
    thread.start()
    for _ in range(20):
        await asyncio.gather(*(db.transact(bump) for _ in range(10)))
    await asyncio.to_thread(thread.join)
    assert rows(db.path) == [400]


async def test_close_commits_what_was_submitted_then_refuses(tmp_path: Path) -> None:
    db = Database(tmp_path / "c.db")
    with db.transaction() as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL)")
    tasks = [asyncio.create_task(db.transact(insert(n))) for n in range(50)]
    await asyncio.sleep(0)  # submitted, not yet handed to the writer
    db.close()
    assert rows(db.path) == list(range(50))
    assert await asyncio.gather(*tasks) == [n * 2 for n in range(50)]
    with pytest.raises(RuntimeError, match="closed"):
        await db.transact(insert(99))
    db.close()  # twice is fine


async def test_a_cancelled_caller_does_not_undo_the_write(db: Database) -> None:
    task = asyncio.create_task(db.transact(insert(7)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await db.transact(lambda conn: None)  # the next group: the cancelled job ran before it
    assert rows(db.path) == [7]
