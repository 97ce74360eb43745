"""The `codey` command as a user runs it: a new process each time, on the scripted fake
(tests/fake_script.py) where the answer is what is tested, on the real model file otherwise."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codey.provision.assemble import model_path
from tests.fake_script import fake_config, write_script
from tests.fault_upstream import FaultUpstream


def codey(
    *args: str, env: dict[str, str], check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [sys.executable, "-m", "codey", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if check and run.returncode != 0:
        pytest.fail(f"codey {' '.join(args)} exited {run.returncode}:\n{run.stderr}")
    return run


@pytest.fixture
def env(model_settings_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**model_settings_env, "CODEY_STORE__SQLITE_PATH": str(tmp_path / "codey.db")}


@pytest.fixture
def fake_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """`env` with every service on the fake."""
    config = fake_config(tmp_path / "codey.toml", write_script(tmp_path / "script.json"))
    return {**env, "CODEY_CONFIG": str(config)}


def test_generate_returns_a_function_definition(fake_env: dict[str, str]) -> None:
    run = codey(
        "generate",
        "a function that tells whether a number is prime",
        "--language",
        "python",
        "--json",
        env=fake_env,
    )
    result = json.loads(run.stdout)
    tree = ast.parse(result["code"])
    assert isinstance(tree.body[0], ast.FunctionDef | ast.Import | ast.ImportFrom)
    assert any(isinstance(node, ast.FunctionDef) for node in tree.body)
    assert "def is_prime(" in result["code"]  # the scripted answer to this prompt
    assert result["syntax"]["valid"] is True
    assert result["tokens_used"] == result["prompt_tokens"] + result["completion_tokens"]


def test_chat_remembers_across_processes(fake_env: dict[str, str]) -> None:
    first = json.loads(codey("chat", "-m", "My name is Ada.", "--json", env=fake_env).stdout)
    conversation = first["conversation_id"]
    second = codey("chat", "--conversation", conversation, "-m", "What is my name?", env=fake_env)
    assert "Ada" in second.stdout
    assert conversation in second.stdout


def test_complete_at_a_cursor_in_a_file(fake_env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "stats.py"
    source.write_text(
        "def average(values):\n"
        "    total = 0\n"
        "    for v in values:\n"
        "        total += v\n"
        "    \n"
        "    return result\n"
    )
    run = codey("complete", str(source), "--line", "5", "--column", "5", "--json", env=fake_env)
    suggestions = json.loads(run.stdout)["suggestions"]
    assert suggestions
    # the model wrote the next line again (tests/fake_script.py); only the new code is kept
    assert suggestions[0]["completion"] == "result = total / len(values)"
    for suggestion in suggestions:
        lines = [line.strip() for line in suggestion["completion"].split("\n")]
        assert "return result" not in lines


def test_complete_with_prefix_and_suffix_prints_a_table(fake_env: dict[str, str]) -> None:
    run = codey("complete", "--prefix", "import numpy as ", "--suffix", "\n", env=fake_env)
    assert "Suggestions" in run.stdout
    assert "np" in run.stdout


def test_a_cursor_outside_the_file_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "a.py"
    source.write_text("x = 1\n")
    run = codey("complete", str(source), "--line", "1", "--column", "9", env=env, check=False)
    assert run.returncode == 1
    assert "column 9 is past its end" in run.stderr
    assert "Traceback" not in run.stderr


def test_model_info_reads_the_gguf_header(env: dict[str, str]) -> None:
    info = json.loads(codey("model", "info", "--json", env=env).stdout)
    assert info["architecture"] == "qwen2"
    assert info["context_length"] == 32768
    assert info["quantisation"] == "Q4_K_M"
    assert info["size_bytes"] == 491_400_064
    assert info["sha256"] == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    human = codey("model", "info", env=env).stdout
    assert "Q4_K_M" in human and "qwen2" in human


@pytest.mark.model  # it copies the real model file, all 491 MB, and hashes it five times
def test_a_model_with_one_byte_changed_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    from codey.config import load_settings

    cache = tmp_path / "models"
    cache.mkdir()
    original = model_path(load_settings().model.cache_dir)
    copy = model_path(cache)
    shutil.copyfile(original, copy)
    with copy.open("r+b") as f:
        f.seek(200_000_000)
        byte = f.read(1)
        f.seek(200_000_000)
        f.write(bytes([byte[0] ^ 0x01]))
    env = {**env, "CODEY_MODEL__CACHE_DIR": str(cache)}
    for args in (("model", "info"), ("generate", "hello world")):
        run = codey(*args, env=env, check=False)
        assert run.returncode == 1
        assert "corrupt" in run.stderr
        assert "codey model pull qwen2.5-coder-0.5b-instruct --force" in run.stderr
        assert "Traceback" not in run.stderr
    run = codey("generate", "hello world", "--json", env=env, check=False)
    assert json.loads(run.stdout)["error"]["type"] == "ModelCorrupt"
    codey("model", "pull", "qwen2.5-coder-0.5b-instruct", "--force", env=env)
    assert codey("model", "verify", env=env).returncode == 0


def test_a_bad_config_file_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "codey.toml"
    config.write_text("[chat]\nmax_tokens = 'big'\n")
    run = codey("--config", str(config), "model", "info", env=env, check=False)
    assert run.returncode == 1
    assert "max_tokens" in run.stderr
    assert "Traceback" not in run.stderr


def test_interactive_chat_keeps_its_history(fake_env: dict[str, str]) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "codey", "chat", "--json", "--max-tokens", "24"],
        input="My name is Ada.\nWhat is my name?\n\n",
        capture_output=True,
        text=True,
        env=fake_env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    decoder, turns, at = json.JSONDecoder(), [], 0
    while at < len(run.stdout.strip()):
        turn, at = decoder.raw_decode(run.stdout, at)
        turns.append(turn)
        while at < len(run.stdout) and run.stdout[at].isspace():
            at += 1
    assert len(turns) == 2
    assert turns[0]["conversation_id"] == turns[1]["conversation_id"]
    assert turns[1]["history_messages"] == 2 and "Ada" in turns[1]["response"]


def test_routes_shows_each_deployment_and_checks_the_remote_ones(tmp_path: Path) -> None:
    serving, elsewhere = FaultUpstream(), FaultUpstream()
    elsewhere.close()  # a port where nothing listens any more
    config = tmp_path / "codey.toml"
    config.write_text(
        '[chat]\nmodel = "remote"\n'
        '[models.local]\n[[models.local.deployments]]\nname = "embedded"\nbackend = "llamacpp"\n'
        '[models.remote]\nfallback = "local"\n'
        f'[[models.remote.deployments]]\nname = "up"\nbackend = "openai"\nurl = "{serving.url}"\n'
        'model_id = "m"\n'
        f'[[models.remote.deployments]]\nname = "down"\nbackend = "openai"\n'
        f'url = "{elsewhere.url}"\nmodel_id = "m"\n'
        f'[[models.remote.deployments]]\nname = "wrong"\nbackend = "openai"\n'
        f'url = "{serving.url}"\nmodel_id = "other"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEY_")}
    try:
        run = codey(
            "--config", str(config), "model", "routes", "--check", "--json", env=env, check=False
        )
    finally:
        serving.close()
    assert run.returncode == 1
    rows = {row["deployment"]: row for row in json.loads(run.stdout)}
    assert rows["embedded"]["services"] == ["generation", "completion"]
    assert rows["up"]["services"] == ["chat"] and rows["up"]["fallback"] == "local"
    assert rows["embedded"]["reachable"] is True and rows["up"]["reachable"] is True
    assert rows["down"]["reachable"].startswith("Cannot connect")
    assert "does not serve 'other'" in rows["wrong"]["reachable"]


@pytest.mark.model
def test_doctor_loads_the_engine_in_a_child_and_gives_a_verdict(env: dict[str, str]) -> None:
    report = json.loads(codey("doctor", "--json", env=env).stdout)
    assert report["healthy"] is True and report["fixes"] == []
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == ["cpu", "engine build", "model file", "engine", "store", "redis"]
    assert checks["engine build"]["facts"]["amx_compiled"] is False
    engine = checks["engine"]["facts"]
    assert engine["pid"] != os.getpid() and engine["tokens"] > 0 and engine["tokens_per_s"] > 0
    assert engine["buffer_types"] and "AMX" not in engine["buffer_types"]
    assert "tokens/s" in codey("doctor", env=env).stdout


def test_doctor_names_what_fails_and_how_to_fix_it(env: dict[str, str], tmp_path: Path) -> None:
    broken = {
        **env,
        "CODEY_MODEL__PATH": str(tmp_path / "missing.gguf"),
        "CODEY_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    run = codey("doctor", "--json", env=broken, check=False)
    assert run.returncode == 1
    report = json.loads(run.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["healthy"] is False
    assert not checks["model file"]["ok"] and "engine" not in checks  # nothing to load
    assert not checks["redis"]["ok"] and "CODEY_REDIS_URL" in checks["redis"]["fix"]
    assert checks["store"]["ok"] and checks["engine build"]["ok"]
    assert any(fix.startswith("redis:") for fix in report["fixes"])


def test_complete_shows_the_model_other_files_of_the_project(
    fake_env: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "shapes"
    (project / "geometry").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'shapes'\n")
    (project / "geometry" / "consts.py").write_text("PI = 3.14159\n")
    area = project / "geometry" / "area.py"
    area.write_text("def circle(r):\n    return \n")
    cursor = ["--line", "2", "--column", "12", "--json"]

    def first(*options: str) -> str:
        run = codey("complete", str(area), *cursor, *options, env=fake_env)
        return str(json.loads(run.stdout)["suggestions"][0]["completion"])

    # consts.py reaches the model as geometry/consts.py, in its repository format.
    assert first("--with", str(project / "geometry" / "consts.py"), "--no-neighbours") == (
        "PI * r * r"
    )
    assert first() == "PI * r * r"  # found as the project's latest change
    assert first("--no-neighbours") == "3.14 * r * r"


@pytest.mark.slow
def test_eval_realcode_reports_each_kind_before_and_after(
    fake_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "realcode"
    run = codey(
        "eval", "realcode", "--kinds", "line,cross_file", "--split", "held_out", "--limit", "4",
        "--output", str(out), "--json", env=fake_env, timeout=600,
    )  # fmt: skip
    summary = json.loads(run.stdout)
    assert summary["seed"] and summary["versions"]["redis"]
    rows = {(r["kind"], r["split"]): r for r in summary["rows"]}
    assert rows["line", "held_out"]["cases"] == 4
    for row in rows.values():
        assert 0 <= row["exact_after"] <= 1 and 0 <= row["similarity_after"] <= 1
    cases = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert len(cases) == 4 and {"want", "before", "after", "parses_after"} <= cases[0].keys()


def test_model_list_use_and_pull_choose_the_registry_model_per_service(
    model_settings_env: dict[str, str], tmp_path: Path
) -> None:
    small, large = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"
    config = tmp_path / "codey.toml"
    config.write_text("# mine\n[model]\ncontext_length = 4096\n")
    env = {k: v for k, v in model_settings_env.items() if k != "CODEY_MODEL__AVAILABLE"}
    env["COLUMNS"] = "200"
    env["CODEY_CONFIG"] = str(config)

    def services() -> dict[str, list[str]]:
        rows = json.loads(codey("model", "list", "--json", env=env).stdout)
        return {row["name"]: row["services"] for row in rows}

    assert services() == {small: ["chat"], large: ["generation", "completion"]}
    codey("model", "use", small, "--service", "generation", env=env)
    assert services() == {small: ["generation", "chat"], large: ["completion"]}
    assert config.read_text().startswith("# mine\n")  # the user's file keeps its comments
    codey("model", "use", large, env=env)
    assert services() == {small: [], large: ["generation", "chat", "completion"]}
    listed = codey("model", "list", env=env).stdout
    assert large in listed and "1.5B" in listed

    unknown = codey("model", "use", "gpt-5", env=env, check=False)
    assert unknown.returncode == 1 and "codey model list" in unknown.stderr
    service = codey("model", "use", small, "-s", "search", env=env, check=False)
    assert service.returncode == 1 and "generation, chat, completion" in service.stderr
    # both are pulled by setup: pulling again verifies them by their stamps
    pulled = json.loads(codey("model", "pull", small, large, "--json", env=env).stdout)
    assert [p["size"] for p in pulled] == [491_400_064, 1_117_320_768]
    info = json.loads(codey("model", "info", large, "--json", env=env).stdout)
    assert info["block_count"] == 28 and info["services"] == ["generation", "chat", "completion"]
