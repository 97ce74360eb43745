"""One SQLite database file for everything codey keeps, with its schema migrations.

The event loop writes through one owner thread that commits in groups: every job queued while
it was busy joins the next transaction (one commit, one wake-up of the loop), so a burst of
requests costs a few commits instead of one thread hop and one commit per write.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_SCHEMA = (
    # version 1
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        language TEXT,
        context TEXT
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    """,
    # version 2: quotas, the usage ledger and the persistent response cache
    """
    CREATE TABLE quota_counters (
        key TEXT NOT NULL,
        field TEXT NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (key, field)
    ) WITHOUT ROWID;
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        day TEXT NOT NULL,
        principal TEXT NOT NULL,
        service TEXT NOT NULL,
        dialect TEXT NOT NULL,
        model TEXT NOT NULL,
        backend TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        input_chars INTEGER NOT NULL,
        output_chars INTEGER NOT NULL,
        latency_ms REAL NOT NULL,
        waited_ms REAL NOT NULL,
        cached INTEGER NOT NULL,
        status INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        error TEXT
    );
    CREATE INDEX ledger_by_day ON ledger(day, principal, service);
    CREATE TABLE response_cache (
        key TEXT PRIMARY KEY,
        service TEXT NOT NULL,
        value TEXT NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # version 3: which deployment answered, after how many attempts
    """
    ALTER TABLE ledger ADD COLUMN deployment TEXT;
    ALTER TABLE ledger ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    """,
    # version 4: batch jobs, their files and lines; batch rows in the ledger
    """
    ALTER TABLE ledger ADD COLUMN batch INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        purpose TEXT NOT NULL,
        filename TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        content BLOB NOT NULL
    );
    CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        kind TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        model TEXT,
        input_file_id TEXT,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        times TEXT NOT NULL,
        output_file_id TEXT,
        error_file_id TEXT,
        metadata TEXT,
        options TEXT NOT NULL
    );
    CREATE INDEX batches_by_status ON batches(status);
    CREATE TABLE batch_lines (
        batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
        line INTEGER NOT NULL,
        custom_id TEXT,
        request TEXT NOT NULL,
        state TEXT NOT NULL,
        status INTEGER,
        result TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (batch_id, line)
    ) WITHOUT ROWID;
    CREATE INDEX batch_lines_by_state ON batch_lines(batch_id, state, line);
    """,
)


@dataclass(slots=True)
class _Job:
    work: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


_Outcome = tuple[bool, Any]
"""(True, result) or (False, exception)."""


class Database:
    """A SQLite file in WAL mode behind one connection.

    Async callers go through `transact`, run by the writer thread in group transactions;
    synchronous callers (CLI reports, conversations) use `transaction`. Both share the
    connection and its lock rather than opening a second connection: a second one would be a
    second, empty database for ":memory:", and two writers on one file would only wait for
    each other's locks anyway; the lock makes the two paths take turns, whole transactions at
    a time.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        self._queue: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self._gathering: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        self._closed = False
        self._writer = threading.Thread(target=self._write, name="codey-sqlite", daemon=True)
        self._writer.start()

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(_SCHEMA[version:], start=version + 1):
            self._conn.executescript(f"BEGIN; {script} PRAGMA user_version = {number}; COMMIT;")

    async def transact(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` on the writer thread inside the next group transaction and
        return its result once that transaction has committed (so a write is durable when
        this returns). `work` must not commit or roll back; if it raises, its own changes
        are rolled back (a savepoint of its own), the others' are kept, and the exception is
        raised here."""
        if self._closed:
            raise RuntimeError(f"The database {self.path} is closed.")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        batch = self._gathering.get(loop)
        if batch is None:
            # Jobs submitted in the same turn of the loop (one asyncio.gather, or many
            # requests at once) reach the writer together, in submission order.
            batch = self._gathering[loop] = []
            loop.call_soon(self._hand_over, loop)
        batch.append(_Job(work, future))
        return await future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._gathering.pop(loop, None)
        if batch:
            self._queue.put(batch)

    def _write(self) -> None:
        """The writer thread: take what is queued, all of it, as one transaction."""
        while True:
            batches = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batches.append(self._queue.get_nowait())
            jobs = [job for batch in batches if batch is not None for job in batch]
            if jobs:
                _settle(jobs, self._commit(jobs))
            if None in batches:
                return

    def _commit(self, jobs: list[_Job]) -> list[_Outcome]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                outcomes = [self._run(job.work) for job in jobs]
                self._conn.commit()
            except Exception as exc:  # the transaction itself failed: so did every job
                if self._conn.in_transaction:
                    self._conn.rollback()
                return [(False, exc)] * len(jobs)
        return outcomes

    def _run(self, work: Callable[[sqlite3.Connection], Any]) -> _Outcome:
        self._conn.execute("SAVEPOINT job")
        try:
            result = work(self._conn)
        except Exception as exc:
            self._conn.execute("ROLLBACK TO job")
            self._conn.execute("RELEASE job")
            return False, exc
        self._conn.execute("RELEASE job")
        return True, result

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection, inside one transaction, held by this thread alone (the writer
        thread waits); for synchronous callers, off the event loop."""
        with self._lock, self._conn:
            yield self._conn

    def ping(self) -> None:
        with self._lock:
            self._conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        """Commit every job submitted so far, stop the writer, close the connection. Call it
        from the event loop's thread or after the loop has stopped; closing twice is fine."""
        if self._closed:
            return
        self._closed = True
        for loop in list(self._gathering):
            self._hand_over(loop)
        self._queue.put(None)
        self._writer.join()
        with self._lock:
            self._conn.close()


def _settle(jobs: list[_Job], outcomes: list[_Outcome]) -> None:
    """Hand the outcomes to their event loops: one wake-up per loop, not per job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]] = {}
    for job, outcome in zip(jobs, outcomes, strict=True):
        by_loop.setdefault(job.future.get_loop(), []).append((job.future, outcome))
    for loop, results in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting
            loop.call_soon_threadsafe(_resolve, results)


def _resolve(results: list[tuple[asyncio.Future[Any], _Outcome]]) -> None:
    for future, (ok, value) in results:
        if future.done():  # cancelled: the caller gave up, the work is done all the same
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
