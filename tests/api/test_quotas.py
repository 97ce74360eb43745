"""Quotas, per-minute limits, cache and ledger against real `codey serve` processes, real SQLite
and a real Redis on loopback."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from codey.gateway.auth import hash_key
from codey.gateway.clock import QuotaDay
from tests.api.conftest import Server, start_server

REDIS_URL = "redis://127.0.0.1:6379/0"
COMPLETE = "/api/v1/codey/complete"
FRESH = {"cache-control": "no-cache, no-store"}


def write_config(
    tmp: Path, name: str, *, per_day: int, per_minute: int | None = None, wait: float = 0.0
) -> Path:
    config = tmp / "codey.toml"
    rpm = f"requests_per_minute = {per_minute}\n" if per_minute else ""
    config.write_text(
        f"[limits]\nwait_seconds = {wait}\n"
        f"[limits.completion]\nrequests_per_day = {per_day}\n{rpm}"
        f'[[auth.keys]]\nname = "{name}"\nsha256 = "{hash_key(name + "-key")}"\n'
        f'services = ["completion"]\n'
        f'[[auth.keys]]\nname = "{name}-admin"\nsha256 = "{hash_key(name + "-admin-key")}"\n'
        "admin = true\n"
        # The policies are under test, not the engine: scripted answers come at once.
        '[[models.scripted.deployments]]\nbackend = "fake"\n'
    )
    return config


def start(tmp: Path, config: Path, **env: str) -> Server:
    """A server whose limits come from `config` alone."""
    settings: dict[str, str | None] = {
        # Two servers on this machine's cores: threads beyond the cores make both crawl.
        "CODEY_MODEL__THREADS": "1",
        "CODEY_CONFIG": str(config),
        "CODEY_LIMITS__COMPLETION__REQUESTS_PER_MINUTE": None,
        "CODEY_STORE__SQLITE_PATH": str(tmp / "codey.db"),
    }
    return start_server(tmp, **(settings | env))


async def burst(urls: list[str], key: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(
        timeout=600, limits=limits, headers={"x-api-key": key, **FRESH}
    ) as client:
        body = {"prefix": "x = ", "max_completions": 1, "max_tokens": 1}
        return await asyncio.gather(
            *(client.post(urls[i % len(urls)] + COMPLETE, json=body) for i in range(count))
        )


def seconds_to_midnight_la() -> int:
    return QuotaDay("America/Los_Angeles").seconds_to_reset(datetime.now(UTC))


def ledger(tmp: Path, principal: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(tmp / "codey.db")
    conn.row_factory = sqlite3.Row
    rows = conn.execute("SELECT * FROM ledger WHERE principal = ? ORDER BY id", (principal,))
    result = rows.fetchall()
    conn.close()
    return result


def quota_burst(urls: list[str], key: str, count: int, admitted: int) -> None:
    """Send the burst and check it: exactly `admitted` answers, the rest refused with the
    seconds to midnight in Los Angeles as they were while the burst ran."""
    latest = seconds_to_midnight_la()
    responses = asyncio.run(burst(urls, key, count))
    earliest = seconds_to_midnight_la()
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == admitted, sorted(set(statuses))
    assert statuses.count(429) == len(responses) - admitted
    for refused in (r for r in responses if r.status_code == 429):
        assert earliest - 1 <= int(refused.headers["retry-after"]) <= latest + 1
        assert f"has used its {admitted} completion requests" in refused.json()["error"]["message"]


def test_quota_of_50_against_200_concurrent_requests(tmp_path: Path) -> None:
    name = f"alpha-{uuid.uuid4().hex[:8]}"
    server = start(tmp_path, write_config(tmp_path, name, per_day=50))
    try:
        quota_burst([server.url], name + "-key", 200, admitted=50)
        rows = ledger(tmp_path, name)
        assert len(rows) == 200
        assert sum(r["status"] == 200 for r in rows) == 50

        with httpx.Client(base_url=server.url, timeout=60) as client:
            usage = client.get(
                "/api/v1/codey/usage", headers={"authorization": f"Bearer {name}-key"}
            ).json()
            completion = usage["services"]["completion"]
            assert (completion["requests"], completion["quota"]) == (50, 50)
            assert completion["remaining"] == 0 and completion["rejected"] == 150
            assert completion["cost_usd"] > 0
            # keys: missing, wrong, without the service, and an admin reading another's usage
            assert client.post(COMPLETE, json={"prefix": "x"}).status_code == 401
            wrong = client.post(
                "/v1/completions",
                headers={"x-api-key": "nope"},
                json={"model": "codey", "prompt": "x"},
            )
            assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]["message"]
            forbidden = client.post(
                "/api/v1/codey/generate",
                json={"prompt": "x"},
                headers={"x-goog-api-key": f"{name}-key"},
            )
            assert forbidden.status_code == 403
            other = client.get(
                f"/api/v1/codey/usage?principal={name}", headers={"x-api-key": f"{name}-admin-key"}
            ).json()
            assert other["services"]["completion"]["requests"] == 50
            denied = client.get(
                f"/api/v1/codey/usage?principal={name}-admin", headers={"x-api-key": f"{name}-key"}
            )
            assert denied.status_code == 403
    finally:
        server.stop()
    env = {"CODEY_STORE__SQLITE_PATH": str(tmp_path / "codey.db"), "COLUMNS": "200"}
    report = subprocess.run(
        [sys.executable, "-m", "codey", "usage", "--principal", name, "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    (row,) = json.loads(report.stdout)
    assert (row["service"], row["succeeded"], row["rejected"]) == ("completion", 50, 150)
    table = subprocess.run(
        [sys.executable, "-m", "codey", "usage", "--days", "7"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "completion" in table.stdout and "codey usage" in table.stdout


def test_two_replicas_sharing_redis_admit_the_quota_once(tmp_path: Path) -> None:
    name = f"beta-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path, name, per_day=50)
    first = start(
        tmp_path, config, CODEY_REDIS_URL=REDIS_URL, CODEY_STORE__SQLITE_PATH=str(tmp_path / "a.db")
    )
    second = start(
        tmp_path, config, CODEY_REDIS_URL=REDIS_URL, CODEY_STORE__SQLITE_PATH=str(tmp_path / "b.db")
    )
    try:
        quota_burst([first.url, second.url], name + "-key", 200, admitted=50)
    finally:
        first.stop()
        second.stop()


def test_cache_is_shared_between_replicas_and_uses_no_quota(tmp_path: Path) -> None:
    name = f"gamma-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path, name, per_day=1)
    first = start(
        tmp_path, config, CODEY_REDIS_URL=REDIS_URL, CODEY_STORE__SQLITE_PATH=str(tmp_path / "a.db")
    )
    second = start(
        tmp_path, config, CODEY_REDIS_URL=REDIS_URL, CODEY_STORE__SQLITE_PATH=str(tmp_path / "b.db")
    )
    try:
        body = {"prefix": f"# {name}\nimport numpy as ", "max_completions": 1, "max_tokens": 4}
        with httpx.Client(timeout=60, headers={"x-api-key": f"{name}-key"}) as client:
            miss = client.post(first.url + COMPLETE, json=body)
            assert miss.status_code == 200 and miss.headers["x-codey-cache"] == "miss"
            assert miss.json()["cached"] is False
            for url in (second.url, first.url, second.url):
                hit = client.post(url + COMPLETE, json=body)
                assert hit.status_code == 200, hit.text  # the quota of 1 is not touched
                assert hit.headers["x-codey-cache"] == "hit" and hit.json()["cached"] is True
                assert hit.json()["suggestions"] == miss.json()["suggestions"]
            other = client.post(second.url + COMPLETE, json={**body, "max_tokens": 5})
            assert other.status_code == 429  # a different request is not a hit
    finally:
        first.stop()
        second.stop()


def test_quota_and_cache_survive_restarts_and_the_ledger_loses_no_row(tmp_path: Path) -> None:
    name = f"delta-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path, name, per_day=20)
    key = {"x-api-key": f"{name}-key"}
    cached_body = {
        "prefix": f"# {name}\ndef add(a, b):\n    return ",
        "max_completions": 1,
        "max_tokens": 4,
    }

    def use(server: Server, count: int) -> list[int]:
        with httpx.Client(base_url=server.url, timeout=120, headers=key | FRESH) as client:
            return [
                client.post(
                    COMPLETE, json={"prefix": f"x{i} = ", "max_completions": 1, "max_tokens": 1}
                ).status_code
                for i in range(count)
            ]

    server = start(tmp_path, config)
    with httpx.Client(base_url=server.url, timeout=120, headers=key) as client:
        first = client.post(COMPLETE, json=cached_body)
    assert use(server, 7) == [200] * 7  # 8 used
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)

    server = start(tmp_path, config)
    with httpx.Client(base_url=server.url, timeout=120, headers=key) as client:
        again = client.post(COMPLETE, json=cached_body)
    assert again.headers["x-codey-cache"] == "hit"  # the SQLite cache outlived the process
    assert again.json()["suggestions"] == first.json()["suggestions"]
    assert use(server, 7) == [200] * 7  # 15 used
    server.stop(signal.SIGKILL)

    server = start(tmp_path, config)
    try:
        assert use(server, 8) == [200] * 5 + [429] * 3
    finally:
        server.stop()
    rows = ledger(tmp_path, name)
    statuses = [r["status"] for r in rows]
    assert statuses.count(200) == 20 + 1  # 20 admitted, plus the cache hit
    assert statuses.count(429) == 3
    assert sum(r["cached"] for r in rows) == 1
    assert len(rows) == 24


def test_per_minute_limit_without_a_wait_budget(tmp_path: Path) -> None:
    name = f"eps-{uuid.uuid4().hex[:8]}"
    server = start(tmp_path, write_config(tmp_path, name, per_day=1000, per_minute=10, wait=0))
    try:
        responses = asyncio.run(burst([server.url], name + "-key", 30))
    finally:
        server.stop()
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10 and statuses.count(429) == 20
    for refused in (r for r in responses if r.status_code == 429):
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "10 requests per minute" in refused.json()["error"]["message"]


@pytest.mark.slow
def test_per_minute_limit_with_a_wait_budget_admits_all_in_three_windows(tmp_path: Path) -> None:
    name = f"zeta-{uuid.uuid4().hex[:8]}"
    server = start(tmp_path, write_config(tmp_path, name, per_day=1000, per_minute=10, wait=65))
    try:
        responses = asyncio.run(burst([server.url], name + "-key", 30))
    finally:
        server.stop()
    assert [r.status_code for r in responses] == [200] * 30
    rows = ledger(tmp_path, name)
    admitted = sorted(r["ts"] - (r["latency_ms"] - r["waited_ms"]) / 1000 for r in rows)
    assert len(admitted) == 30
    for i in range(len(admitted) - 10):
        assert admitted[i + 10] - admitted[i] >= 59.9  # never 11 within a minute
    assert admitted[-1] - admitted[0] >= 119.9  # so: three windows
