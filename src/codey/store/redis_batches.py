"""Batch jobs in Redis, for replicas that share them: any replica runs any job's lines and
resumes a job whose replica died.

Keys (under `codey:batch:`): `file:{id}` (a hash: meta, content), `files` (ids by upload),
`job:{id}` (the job as JSON), `jobs` (ids by creation), `active` (ids with work left),
`lines:{id}` (line number -> the line as JSON), `pending:{id}` (numbers of pending lines),
`counts:{id}` (settled lines by state), `lease:{id}:{n}` (the replica running line n, for
`lease_seconds`), `finish:{id}` (the replica writing the output).

A replica claims a line with a lease; a line whose replica died is claimed again once its
lease runs out. Settling is one script that writes only a line still pending, so each line
has one result whatever happens. The line's result (here) and its ledger row (in the
replica's own SQLite) are two writes: a replica killed between them leaves a settled line
without its row, or, the other way round, a row for a line another replica then runs again.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict
from typing import Any

import redis.asyncio as aioredis

from codey.store.batches import (
    ACTIVE,
    BatchJob,
    BatchStore,
    Counts,
    Line,
    LineState,
    Status,
    StoredFile,
    new_file,
)

_CLAIM = """
local found = {}
local numbers = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, n in ipairs(numbers) do
  if #found >= tonumber(ARGV[3]) then break end
  local skipped = false
  for i = 4, #ARGV do if ARGV[i] == n then skipped = true end end
  if not skipped and redis.call('SET', KEYS[3] .. n, ARGV[1], 'NX', 'PX', ARGV[2]) then
    table.insert(found, redis.call('HGET', KEYS[2], n))
  end
end
return found
"""
_SETTLE = """
local line = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1]))
if line.state ~= 'pending' then return 0 end
line.state = ARGV[2]
line.status = tonumber(ARGV[3])
line.result = ARGV[4]
line.attempts = line.attempts + 1
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(line))
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
return 1
"""
_RETRY = """
local line = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1]))
line.attempts = line.attempts + 1
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(line))
redis.call('DEL', KEYS[2])
return 1
"""


class RedisBatchStore(BatchStore):
    def __init__(
        self, client: aioredis.Redis, lease_seconds: float, prefix: str = "codey:batch:"
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._lease_ms = str(int(lease_seconds * 1000))
        self._token = secrets.token_hex(8)
        """This replica, as its leases name it."""
        self._claim = client.register_script(_CLAIM)
        self._settle = client.register_script(_SETTLE)
        self._retry = client.register_script(_RETRY)

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    async def add_file(self, owner: str, purpose: str, filename: str, content: bytes) -> StoredFile:
        stored = new_file(owner, purpose, filename, content)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._key("file", stored.id),
                mapping={"meta": json.dumps(asdict(stored)), "content": content},
            )
            pipe.zadd(self._key("files"), {stored.id: time.time()})
            await pipe.execute()
        return stored

    async def file(self, file_id: str) -> StoredFile | None:
        meta = await self._client.hget(self._key("file", file_id), "meta")
        return StoredFile(**json.loads(meta)) if meta else None

    async def content(self, file_id: str) -> bytes:
        content = await self._client.hget(self._key("file", file_id), "content")
        return content.encode() if isinstance(content, str) else bytes(content or b"")

    async def files(self, owner: str | None, purpose: str | None, limit: int) -> list[StoredFile]:
        found = []
        for file_id in await self._ids("files"):
            stored = await self.file(file_id)
            if stored is None or (owner is not None and stored.owner != owner):
                continue
            if purpose is None or stored.purpose == purpose:
                found.append(stored)
            if len(found) == limit:
                break
        return found

    async def delete_file(self, file_id: str) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(self._key("file", file_id))
            pipe.zrem(self._key("files"), file_id)
            await pipe.execute()

    async def create(self, job: BatchJob, lines: list[Line]) -> None:
        numbers = {str(x.line): json.dumps(asdict(x)) for x in lines}
        pending = {str(x.line): x.line for x in lines if x.state == "pending"}
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self._key("job", job.id), json.dumps(asdict(job)))
            pipe.hset(self._key("lines", job.id), mapping=numbers)  # type: ignore[arg-type]
            if pending:
                pipe.zadd(self._key("pending", job.id), pending)
            pipe.zadd(self._key("jobs"), {job.id: time.time()})
            pipe.sadd(self._key("active"), job.id)
            await pipe.execute()

    async def get(self, batch_id: str) -> BatchJob | None:
        raw = await self._client.get(self._key("job", batch_id))
        return BatchJob(**json.loads(raw)) if raw else None

    async def jobs(
        self, owner: str | None, kind: str | None, limit: int, after: str | None = None
    ) -> list[BatchJob]:
        ids = await self._ids("jobs")
        if after is not None and after in ids:
            ids = ids[ids.index(after) + 1 :]
        found = []
        for batch_id in ids:
            job = await self.get(batch_id)
            if job is None or (owner is not None and job.owner != owner):
                continue
            if kind is None or job.kind == kind:
                found.append(job)
            if len(found) == limit:
                break
        return found

    async def active(self) -> list[BatchJob]:
        ids = [_text(i) for i in await self._client.smembers(self._key("active"))]
        jobs = [job for i in ids if (job := await self.get(i)) is not None]
        return sorted(jobs, key=lambda j: (j.created_at, j.id))

    async def counts(self, batch_ids: list[str]) -> dict[str, Counts]:
        async with self._client.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.hlen(self._key("lines", batch_id))
                pipe.hmget(self._key("counts", batch_id), ["done", "failed"])
            replies = await pipe.execute()  # one round trip for every job
        return {
            batch_id: Counts(int(total), int(done or 0), int(failed or 0))
            for batch_id, total, (done, failed) in zip(
                batch_ids, replies[::2], replies[1::2], strict=True
            )
        }

    async def claim(self, batch_id: str, limit: int, skip: set[int]) -> list[Line]:
        keys = [
            self._key("pending", batch_id),
            self._key("lines", batch_id),
            self._key("lease", batch_id, ""),
        ]
        args = [self._token, self._lease_ms, str(limit), *map(str, skip)]
        claimed = await self._claim(keys=keys, args=args)
        return [Line(**json.loads(raw)) for raw in claimed]

    async def claim_finish(self, batch_id: str) -> bool:
        key = self._key("finish", batch_id)
        return bool(await self._client.set(key, self._token, nx=True, px=int(self._lease_ms)))

    async def settled(self, batch_id: str, state: LineState) -> list[Line]:
        lines = [
            Line(**json.loads(raw))
            for raw in await self._client.hvals(self._key("lines", batch_id))
        ]
        return sorted((x for x in lines if x.state == state), key=lambda x: x.line)

    async def set_status(self, job: BatchJob, status: Status, **fields: Any) -> None:
        job.status = status
        job.times[f"{status}_at"] = int(time.time())
        for name, value in fields.items():
            setattr(job, name, value)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self._key("job", job.id), json.dumps(asdict(job)))
            if status in ACTIVE:
                pipe.sadd(self._key("active"), job.id)
            else:
                pipe.srem(self._key("active"), job.id)
            await pipe.execute()

    async def settle(self, line: Line, state: LineState, status: int, result: Any) -> None:
        await self._settle(
            keys=[
                self._key("lines", line.batch_id),
                self._key("pending", line.batch_id),
                self._key("lease", line.batch_id, str(line.line)),
                self._key("counts", line.batch_id),
            ],
            args=[str(line.line), state, str(status), json.dumps(result)],
        )

    async def retry_later(self, line: Line) -> None:
        await self._retry(
            keys=[
                self._key("lines", line.batch_id),
                self._key("lease", line.batch_id, str(line.line)),
            ],
            args=[str(line.line)],
        )

    async def settle_rest(self, batch_id: str, status: int, result: Any) -> None:
        for number in await self._client.zrange(self._key("pending", batch_id), 0, -1):
            line = Line(batch_id, int(_text(number)), None, "")  # type: ignore[arg-type]
            await self.settle(line, "failed", status, result)

    async def _ids(self, name: str) -> list[str]:
        """The ids a sorted set holds, newest first."""
        return [_text(i) for i in await self._client.zrevrange(self._key(name), 0, -1)]  # type: ignore[arg-type]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
