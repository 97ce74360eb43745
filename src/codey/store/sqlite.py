"""One SQLite database file for everything codey keeps, with its schema migrations."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
)


class Database:
    """A SQLite file in WAL mode, shared by threads through one serialised connection."""

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

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(_SCHEMA[version:], start=version + 1):
            self._conn.executescript(f"BEGIN; {script} PRAGMA user_version = {number}; COMMIT;")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection, inside one transaction, held by this thread alone."""
        with self._lock, self._conn:
            yield self._conn

    def ping(self) -> None:
        with self._lock:
            self._conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
