"""Batch jobs, their files and their lines: the interface, and its SQLite implementation.

A job's lines are written with the job, each with its state: `pending` until it has an
answer or a final error, then `done` or `failed`. With SQLite, the write that settles a line
joins the transaction of its ledger row (see `Gateway.serve`), so after a crash a line has
both or neither, and runs again only in the second case. `store/redis_batches.py` keeps the
same in Redis for replicas that share jobs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from codey.store.sqlite import Database

Status = Literal[
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
]
ACTIVE: tuple[Status, ...] = ("validating", "in_progress", "finalizing", "cancelling")
"""The statuses the runner still has work in."""
LineState = Literal["pending", "done", "failed"]
T = TypeVar("T")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class StoredFile:
    id: str
    owner: str
    purpose: str
    filename: str
    bytes: int
    sha256: str
    created_at: int


def new_file(owner: str, purpose: str, filename: str, content: bytes) -> StoredFile:
    """A new file's record: a new id, the content's size and SHA-256, the time now."""
    digest = hashlib.sha256(content).hexdigest()
    return StoredFile(
        new_id("file"), owner, purpose, filename, len(content), digest, int(time.time())
    )


@dataclass
class BatchJob:
    """One job as stored; `kind` says which API made it ("openai" or "vertex")."""

    id: str
    owner: str
    kind: str
    endpoint: str
    status: Status
    created_at: int
    expires_at: int
    model: str | None = None
    input_file_id: str | None = None
    times: dict[str, int] = field(default_factory=dict)
    """When it reached each status: in_progress_at, completed_at, ..."""
    output_file_id: str | None = None
    error_file_id: str | None = None
    metadata: dict[str, str] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    """What the API that made it keeps: Vertex's display name, output folder, parameters."""


@dataclass(frozen=True)
class Line:
    batch_id: str
    line: int
    """Its place in the input, from 0."""
    custom_id: str | None
    request: str
    """The input line as sent (OpenAI) or the instance (Vertex), JSON text."""
    state: LineState = "pending"
    status: int | None = None
    result: str | None = None
    """The answer's body or the error, JSON text."""
    attempts: int = 0


@dataclass(frozen=True)
class Counts:
    total: int
    completed: int
    failed: int

    @property
    def pending(self) -> int:
        return self.total - self.completed - self.failed


class BatchStore(ABC):
    """Where jobs, lines and files live; every method may be called from the event loop."""

    @abstractmethod
    async def add_file(self, owner: str, purpose: str, filename: str, content: bytes) -> StoredFile:
        """Keep a file's bytes with their SHA-256; nothing in them is ever run."""

    @abstractmethod
    async def file(self, file_id: str) -> StoredFile | None: ...

    @abstractmethod
    async def content(self, file_id: str) -> bytes: ...

    @abstractmethod
    async def files(self, owner: str | None, purpose: str | None, limit: int) -> list[StoredFile]:
        """Newest first; every owner's with None."""

    @abstractmethod
    async def delete_file(self, file_id: str) -> None: ...

    @abstractmethod
    async def create(self, job: BatchJob, lines: list[Line]) -> None:
        """The job and all its lines, at once."""

    @abstractmethod
    async def get(self, batch_id: str) -> BatchJob | None: ...

    @abstractmethod
    async def jobs(
        self, owner: str | None, kind: str | None, limit: int, after: str | None = None
    ) -> list[BatchJob]:
        """Newest first, of one API's kind or all; `after` is the id of the last job of the
        previous page."""

    @abstractmethod
    async def active(self) -> list[BatchJob]:
        """The jobs the runner still has work in, oldest first."""

    @abstractmethod
    async def counts(self, batch_ids: list[str]) -> dict[str, Counts]: ...

    @abstractmethod
    async def claim(self, batch_id: str, limit: int, skip: set[int]) -> list[Line]:
        """Up to `limit` pending lines not in `skip`, for this runner to run."""

    @abstractmethod
    async def claim_finish(self, batch_id: str) -> bool:
        """Whether this runner is the one to write the job's output."""

    @abstractmethod
    async def settled(self, batch_id: str, state: LineState) -> list[Line]:
        """The job's lines in `state`, in input order."""

    @abstractmethod
    async def set_status(self, job: BatchJob, status: Status, **fields: Any) -> None:
        """Move a job on, stamping `<status>_at`; `fields` are its other fields to set."""

    async def cancel(self, batch_id: str) -> BatchJob | None:
        """Ask for a job to stop: cancelling if it still has work, as it was otherwise."""
        job = await self.get(batch_id)
        if job is not None and job.status in ("validating", "in_progress"):
            await self.set_status(job, "cancelling")
        return job

    @abstractmethod
    async def settle(self, line: Line, state: LineState, status: int, result: Any) -> None:
        """Give a pending line its answer or final error (a settled line keeps its first)."""

    @abstractmethod
    async def retry_later(self, line: Line) -> None:
        """Count a failed attempt; the line stays pending."""

    @abstractmethod
    async def settle_rest(self, batch_id: str, status: int, result: Any) -> None:
        """Fail every line still pending (the job expired, or its key is gone)."""


class SQLiteBatchStore(BatchStore):
    """Jobs in the server's SQLite database, beside the ledger their lines commit with."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def read() -> T:
            with self._db.transaction() as conn:
                return work(conn)

        return await asyncio.to_thread(read)

    async def add_file(self, owner: str, purpose: str, filename: str, content: bytes) -> StoredFile:
        stored = new_file(owner, purpose, filename, content)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*_file_values(stored), content),
            )

        await self._db.transact(insert)
        return stored

    async def file(self, file_id: str) -> StoredFile | None:
        sql = f"SELECT {_FILE_COLUMNS} FROM files WHERE id = ?"
        found = await self._read(lambda conn: conn.execute(sql, [file_id]).fetchone())
        return StoredFile(**dict(found)) if found else None

    async def content(self, file_id: str) -> bytes:
        sql = "SELECT content FROM files WHERE id = ?"
        row = await self._read(lambda conn: conn.execute(sql, [file_id]).fetchone())
        return bytes(row[0]) if row else b""

    async def files(self, owner: str | None, purpose: str | None, limit: int) -> list[StoredFile]:
        where, args = _owned(owner)
        if purpose is not None:
            where, args = f"{where} AND purpose = ?", [*args, purpose]
        sql = (
            f"SELECT {_FILE_COLUMNS} FROM files WHERE {where} "
            "ORDER BY created_at DESC, rowid DESC LIMIT ?"
        )
        rows = await self._read(lambda conn: conn.execute(sql, [*args, limit]).fetchall())
        return [StoredFile(**dict(r)) for r in rows]

    async def delete_file(self, file_id: str) -> None:
        await self._db.transact(
            lambda conn: conn.execute("DELETE FROM files WHERE id = ?", [file_id])
        )

    async def create(self, job: BatchJob, lines: list[Line]) -> None:
        rows = [
            (job.id, x.line, x.custom_id, x.request, x.state, x.status, x.result, 0) for x in lines
        ]

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _job_values(job),
            )
            conn.executemany("INSERT INTO batch_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

        await self._db.transact(insert)

    async def get(self, batch_id: str) -> BatchJob | None:
        sql = "SELECT * FROM batches WHERE id = ?"
        row = await self._read(lambda conn: conn.execute(sql, [batch_id]).fetchone())
        return _job(row) if row else None

    async def jobs(
        self, owner: str | None, kind: str | None, limit: int, after: str | None = None
    ) -> list[BatchJob]:
        where, args = _owned(owner)
        if kind is not None:
            where, args = f"{where} AND kind = ?", [*args, kind]
        if after is not None:
            where += " AND rowid < (SELECT rowid FROM batches WHERE id = ?)"
            args.append(after)
        sql = f"SELECT * FROM batches WHERE {where} ORDER BY rowid DESC LIMIT ?"
        rows = await self._read(lambda conn: conn.execute(sql, [*args, limit]).fetchall())
        return [_job(r) for r in rows]

    async def active(self) -> list[BatchJob]:
        marks = ", ".join("?" for _ in ACTIVE)
        sql = f"SELECT * FROM batches WHERE status IN ({marks}) ORDER BY rowid"
        rows = await self._read(lambda conn: conn.execute(sql, ACTIVE).fetchall())
        return [_job(r) for r in rows]

    async def counts(self, batch_ids: list[str]) -> dict[str, Counts]:
        sql = (
            "SELECT batch_id, count(*), sum(state = 'done'), sum(state = 'failed') "
            f"FROM batch_lines WHERE batch_id IN ({', '.join('?' for _ in batch_ids)}) "
            "GROUP BY batch_id"
        )
        rows = await self._read(lambda conn: conn.execute(sql, batch_ids).fetchall())
        found = {r[0]: Counts(r[1], r[2] or 0, r[3] or 0) for r in rows}
        return {i: found.get(i, Counts(0, 0, 0)) for i in batch_ids}

    async def claim(self, batch_id: str, limit: int, skip: set[int]) -> list[Line]:
        # One server per database: the runner's own `skip` is all the claiming needed.
        sql = (
            "SELECT * FROM batch_lines WHERE batch_id = ? AND state = 'pending' "
            "ORDER BY line LIMIT ?"
        )
        args = [batch_id, limit + len(skip)]
        rows = await self._read(lambda conn: conn.execute(sql, args).fetchall())
        return [Line(**dict(r)) for r in rows if r["line"] not in skip][:limit]

    async def claim_finish(self, batch_id: str) -> bool:
        return True

    async def settled(self, batch_id: str, state: LineState) -> list[Line]:
        sql = "SELECT * FROM batch_lines WHERE batch_id = ? AND state = ? ORDER BY line"
        rows = await self._read(lambda conn: conn.execute(sql, [batch_id, state]).fetchall())
        return [Line(**dict(r)) for r in rows]

    async def set_status(self, job: BatchJob, status: Status, **fields: Any) -> None:
        job.status = status
        job.times[f"{status}_at"] = int(time.time())
        for name, value in fields.items():
            setattr(job, name, value)
        columns = {"status": status, "times": json.dumps(job.times)}
        for name, value in fields.items():
            columns[name] = json.dumps(value) if isinstance(value, dict) else value
        assignments = ", ".join(f"{name} = ?" for name in columns)

        def update(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE batches SET {assignments} WHERE id = ?", [*columns.values(), job.id]
            )

        await self._db.transact(update)

    async def settle(self, line: Line, state: LineState, status: int, result: Any) -> None:
        def update(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE batch_lines SET state = ?, status = ?, result = ?, "
                "attempts = attempts + 1 WHERE batch_id = ? AND line = ? AND state = 'pending'",
                [state, status, json.dumps(result), line.batch_id, line.line],
            )

        await self._db.transact(update)

    async def retry_later(self, line: Line) -> None:
        await self._db.transact(
            lambda conn: conn.execute(
                "UPDATE batch_lines SET attempts = attempts + 1 WHERE batch_id = ? AND line = ?",
                [line.batch_id, line.line],
            )
        )

    async def settle_rest(self, batch_id: str, status: int, result: Any) -> None:
        await self._db.transact(
            lambda conn: conn.execute(
                "UPDATE batch_lines SET state = 'failed', status = ?, result = ? "
                "WHERE batch_id = ? AND state = 'pending'",
                [status, json.dumps(result), batch_id],
            )
        )


_FILE_COLUMNS = "id, owner, purpose, filename, bytes, sha256, created_at"


def _file_values(f: StoredFile) -> tuple[Any, ...]:
    return (f.id, f.owner, f.purpose, f.filename, f.bytes, f.sha256, f.created_at)


def _owned(owner: str | None) -> tuple[str, list[Any]]:
    return ("1", []) if owner is None else ("owner = ?", [owner])


def _job_values(job: BatchJob) -> tuple[Any, ...]:
    return (
        job.id,
        job.owner,
        job.kind,
        job.endpoint,
        job.model,
        job.input_file_id,
        job.status,
        job.created_at,
        job.expires_at,
        json.dumps(job.times),
        job.output_file_id,
        job.error_file_id,
        None if job.metadata is None else json.dumps(job.metadata),
        json.dumps(job.options),
    )


def _job(row: sqlite3.Row) -> BatchJob:
    values = dict(row)
    values["times"] = json.loads(values["times"])
    values["options"] = json.loads(values["options"])
    values["metadata"] = json.loads(values["metadata"]) if values["metadata"] else None
    return BatchJob(**values)
