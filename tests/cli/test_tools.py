"""`codey bench` and `codey eval humaneval` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import codey

pytestmark = pytest.mark.model


@pytest.fixture
def env(model_settings_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**model_settings_env, "CODEY_STORE__SQLITE_PATH": str(tmp_path / "codey.db")}


def test_bench_writes_its_plot_and_json(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "bench"
    run = codey("bench", "--requests", "1", "--max-tokens", "16", "--output", str(out), env=env)
    assert "codey bench (in-process)" in run.stdout
    result = json.loads((out / "bench.json").read_text())
    for service in ("generation", "chat", "completion"):
        s = result["services"][service]
        assert s["requests"] == 1 and s["errors"] == 0
        assert s["tokens_per_s"] > 0 and s["bare_tokens_per_s"] > 0 and s["ratio_to_bare"] > 0
    assert (out / "latency.png").read_bytes().startswith(b"\x89PNG")


def test_humaneval_on_20_problems(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "he"
    run = codey(
        "eval", "humaneval", "--limit", "20", "--output", str(out), "--json", env=env, timeout=1800
    )
    summary = json.loads(run.stdout)
    assert summary["problems"] == 20
    assert 0 < summary["pass@1"] <= 1
    assert summary["infill_lines"] > 20
    assert summary["infill_pass@1_postprocessed"] >= summary["infill_pass@1_raw"]
    cases = [json.loads(line) for line in (out / "generation.jsonl").read_text().splitlines()]
    assert len(cases) == 20 and {"task_id", "passed", "reason", "code"} <= cases[0].keys()
    assert json.loads((out / "summary.json").read_text()) == summary
