"""Compare codey's gateway with LiteLLM's proxy in front of the same instant upstream.

    .venv/bin/python bench/proxy_overhead.py [--duration 10] [--warmup 2] [--access-log] \
        [--output artifacts/proxy-overhead] [--targets direct,codey,litellm]

One run starts an instant OpenAI-compatible upstream (bench/fixtures/instant_upstream.py, raw
ASGI under uvicorn with uvloop and httptools), then, one after the other and each alone in front
of that upstream: nothing (the baseline), `codey serve` (one worker, one API key, limits that
never bite) and LiteLLM's proxy (`litellm[proxy]`, one worker, a master key, no database). Each
gets the same wrk load at concurrency 1 and 16 (a warm-up, then the measured run), every request
a chat completion with a prompt seen once, so that codey's cache misses and its whole pipeline
runs (auth, quota, cache lookup, the call, ledger row, metrics). Neither proxy logs each request
unless --access-log. LiteLLM is installed on first use in a venv of its own under the user cache
(never into codey's environment), with httptools so that both parse HTTP with the same code.

The CPU time of every party is read from /proc, and so is what the rest of the machine used
meanwhile: above 5% of the CPUs the run is flagged as not clean. Prints a table and writes
proxy_overhead.json and proxy_overhead.png under --output.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import platformdirs
from rich.console import Console
from rich.table import Table

LITELLM_VERSION = "1.108.5"  # newer ones need `litellm-proxy` or extras the registry lacks
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "bench" / "fixtures"
LUA = FIXTURES / "unique_chat.lua"
MODEL = "instant"
CONCURRENCY = (1, 16)
TARGETS = ("direct", "codey", "litellm")
PATH = "/v1/chat/completions"
ADDED_P50_TARGET_MS = 1.5
RPS_RATIO_TARGET = 5.0
QUIET_SHARE = 0.05  # more CPU than this used by other processes during a run spoils it

console = Console(width=120)


@dataclass
class Target:
    """One thing to load: the upstream itself or a proxy in front of it."""

    name: str
    base_url: str
    key: str | None
    pgid: int  # the process group whose CPU time counts as the proxy's (the upstream's: direct)


@dataclass
class Measurement:
    target: str
    concurrency: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int
    proxy_cpu_ms_per_request: float | None
    upstream_cpu_ms_per_request: float
    wrk_cpu_ms_per_request: float
    other_cpu_share: float  # CPU the rest of the machine used meanwhile, share of all cores


@dataclass
class Stack:
    """The processes of one run and where their logs go."""

    workdir: Path
    upstream_port: int
    upstream_pgid: int
    key: str
    processes: list[subprocess.Popen[bytes]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="Measured seconds per run.")
    parser.add_argument("--warmup", type=int, default=2, help="Warm-up seconds before each run.")
    parser.add_argument("--output", type=Path, default=ROOT / "artifacts" / "proxy-overhead")
    parser.add_argument("--targets", default=",".join(TARGETS), help="direct,codey,litellm")
    parser.add_argument(
        "--rounds", type=int, default=1, help="Repeat every target this often; report medians."
    )
    parser.add_argument(
        "--access-log", action="store_true", help="Both proxies log every request (their default)."
    )
    args = parser.parse_args()
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown or "direct" not in args.targets:
        parser.error(f"--targets takes direct (always) plus codey and/or litellm, not {unknown}")
    return args


# --- tools: wrk and LiteLLM's own venv ---------------------------------------------------------


def ensure_wrk() -> str:
    """The wrk binary; installed from Debian's packages when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        console.print("wrk is missing: installing the Debian package [bold]wrk[/] ...")
        subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is needed: `sudo apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`.")
    return found


def ensure_litellm() -> Path:
    """The bin directory of a venv holding `litellm[proxy]==LITELLM_VERSION`, made on first use.

    httptools (codey's version) goes in too, so that both proxies parse HTTP with the same code.
    """
    venv = platformdirs.user_cache_path("codey") / "bench" / f"litellm-{LITELLM_VERSION}"
    binary, ready = venv / "bin" / "litellm", venv / ".installed"
    if ready.exists():
        return binary.parent
    log = venv.parent / f"litellm-{LITELLM_VERSION}-install.log"
    venv.parent.mkdir(parents=True, exist_ok=True)
    console.print(
        f"Installing litellm\\[proxy]=={LITELLM_VERSION} into {venv} (first run only, a few "
        f"minutes; log: {log}) ..."
    )
    packages = [f"litellm[proxy]=={LITELLM_VERSION}", f"httptools=={version('httptools')}"]
    with console.status("pip install litellm\\[proxy] ..."), log.open("wb") as out:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", *packages]
        done = subprocess.run(pip, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0 or not binary.exists():
        shutil.rmtree(venv, ignore_errors=True)
        sys.exit(f"Installing LiteLLM failed; see {log}")
    ready.touch()
    return binary.parent


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(stack: Stack, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start a process in its own process group, output to a log file; returns the group id."""
    with (stack.workdir / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=stack.workdir,
            start_new_session=True,
        )
    stack.processes.append(process)
    return process.pid


def stop(stack: Stack, pgid: int) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    for process in [p for p in stack.processes if p.pid == pgid]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            process.wait()
        stack.processes.remove(process)


def wait_ready(stack: Stack, name: str, pgid: int, url: str, timeout: float = 180) -> None:
    """Poll `url` until it answers 200; fail with the log's tail if the process dies or stalls."""
    process = next(p for p in stack.processes if p.pid == pgid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    tail = (stack.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{name} did not become ready at {url}:\n{tail}")


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    """The upstream, running; every process started here is stopped on the way out."""
    with tempfile.TemporaryDirectory(prefix="codey-proxy-bench-") as tmp:
        stack = Stack(Path(tmp), free_port(), 0, f"sk-bench-{secrets.token_hex(16)}", [])
        argv = [
            sys.executable, "-m", "uvicorn", "--app-dir", str(FIXTURES), "instant_upstream:app",
            "--host", "127.0.0.1", "--port", str(stack.upstream_port), "--loop", "uvloop",
            "--http", "httptools", "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        try:
            stack.upstream_pgid = spawn(stack, "upstream", argv)
            upstream = f"http://127.0.0.1:{stack.upstream_port}"
            wait_ready(stack, "upstream", stack.upstream_pgid, f"{upstream}/v1/models", 30)
            yield stack
        finally:
            for process in list(stack.processes):
                stop(stack, process.pid)


def start_codey(stack: Stack, access_log: bool) -> Target:
    """`codey serve`, one worker, routing chat to the upstream, one API key."""
    port = free_port()
    digest = hashlib.sha256(stack.key.encode()).hexdigest()
    config = stack.workdir / "codey.toml"
    config.write_text(
        f'[chat]\nmodel = "{MODEL}"\n\n'
        f"[[models.{MODEL}.deployments]]\n"
        f'backend = "openai"\nurl = "http://127.0.0.1:{stack.upstream_port}/v1"\n'
        f'model_id = "{MODEL}"\n\n'
        f'[[auth.keys]]\nname = "bench"\nsha256 = "{digest}"\n\n'
        "[limits.chat]\nrequests_per_day = 100000000\nrequests_per_minute = 100000000\n\n"
        f'[store]\nsqlite_path = "{stack.workdir / "codey.db"}"\n'
    )
    codey = Path(sys.executable).parent / "codey"
    argv = [str(codey), "serve", "--port", str(port), "--config", str(config)]
    argv += ["--log-level", "info" if access_log else "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEY_")}  # the file only
    pgid = spawn(stack, "codey", argv, env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(stack, "codey", pgid, f"{base}/readyz")
    return Target("codey", base, stack.key, pgid)


def start_litellm(stack: Stack, bindir: Path, access_log: bool) -> Target:
    """LiteLLM's proxy, one worker, a master key, no database, no callbacks."""
    port = free_port()
    config = stack.workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: http://127.0.0.1:{stack.upstream_port}/v1\n"
        "      api_key: x\n"
        "general_settings:\n"
        f"  master_key: {stack.key}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # read the bundled price map, not the network
    if not access_log:
        env["LITELLM_LOG"] = "WARNING"  # uvicorn's level: no access log; its loggers unchanged
    argv = [
        str(bindir / "litellm"), "--config", str(config), "--host", "127.0.0.1",
        "--port", str(port), "--num_workers", "1",
    ]  # fmt: skip
    pgid = spawn(stack, "litellm", argv, env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(stack, "litellm", pgid, f"{base}/health/liveliness")
    return Target("litellm", base, stack.key, pgid)


# --- load --------------------------------------------------------------------------------------


def check_answer(target: Target) -> None:
    """One request by hand: the proxy must return a chat.completion with the upstream's text."""
    headers = {"Authorization": f"Bearer {target.key}"} if target.key else {}
    prompt = f"check {secrets.token_hex(4)}"
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
    response = httpx.post(target.base_url + PATH, json=body, headers=headers, timeout=30)
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        content = None
    if response.status_code != 200 or content != "Hello!":
        raise RuntimeError(f"{target.name} answered {response.status_code}: {response.text[:500]}")


def cpu_seconds(pgid: int) -> float:
    """User plus system CPU time of every live process in a process group (Linux /proc)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields: state ppid pgrp ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(target: Target, upstream_pgid: int) -> tuple[float, float, float, float]:
    """CPU seconds so far of: the proxy, the upstream, our finished children (wrk), the machine."""
    busy = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    machine = (sum(busy) - busy[3] - busy[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    proxy = 0.0 if target.pgid == upstream_pgid else cpu_seconds(target.pgid)
    return proxy, cpu_seconds(upstream_pgid), children.ru_utime + children.ru_stime, machine


def run_wrk(wrk: str, target: Target, concurrency: int, seconds: int) -> dict[str, Any]:
    """One wrk run; returns the RESULT object the Lua script prints."""
    argv = [
        wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA),
        target.base_url + PATH, "--", secrets.token_hex(6), MODEL, target.key or "",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line.removeprefix("RESULT ")))
    raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")


def measure(
    wrk: str, target: Target, upstream_pgid: int, concurrency: int, args: argparse.Namespace
) -> Measurement:
    """Warm up, then the measured run, with the CPU time each party spent during it; what the
    rest of the machine spent meanwhile (`other_cpu_share` of all cores) says how quiet it was."""
    run_wrk(wrk, target, concurrency, args.warmup)
    before = cpu_snapshot(target, upstream_pgid)
    result = run_wrk(wrk, target, concurrency, args.duration)
    proxy, upstream, load, machine = (
        b - a for a, b in zip(before, cpu_snapshot(target, upstream_pgid), strict=True)
    )
    n, lat = result["requests"], result["latency_us"]
    seconds = result["duration_us"] / 1e6
    other = max(0.0, machine - proxy - upstream - load) / (seconds * (os.cpu_count() or 1))

    def per_request(cpu: float) -> float:
        return round(cpu * 1000 / max(n, 1), 3)

    return Measurement(
        target.name, concurrency, n, round(seconds, 3), round(n / seconds, 1),
        lat["p50"] / 1000, lat["p90"] / 1000, lat["p99"] / 1000, round(lat["mean"] / 1000, 3),
        lat["max"] / 1000, sum(result["errors"].values()),
        None if target.name == "direct" else per_request(proxy), per_request(upstream),
        per_request(load), round(other, 3),
    )  # fmt: skip


def codey_cache_results(target: Target) -> dict[str, int]:
    """Requests by cache result from codey's /metrics: all must be misses."""
    text = httpx.get(target.base_url + "/metrics", timeout=10).text
    counts: dict[str, int] = {}
    for match in re.finditer(
        r'^codey_requests_total\{[^}]*cache="(\w+)"[^}]*\} (\S+)$', text, re.M
    ):
        counts[match[1]] = counts.get(match[1], 0) + int(float(match[2]))
    return counts


def run_all(
    args: argparse.Namespace, wrk: str, litellm_bin: Path | None, cache_results: dict[str, int]
) -> list[Measurement]:
    """Each target alone in front of the upstream, one after the other, both concurrencies, in
    `args.rounds` rounds (proxies started afresh each time); `cache_results` receives codey's
    requests by cache result."""
    results: list[Measurement] = []
    with running_stack() as stack:
        for round_, name in [(r, n) for r in range(1, args.rounds + 1) for n in args.targets]:
            if name == "direct":
                upstream = f"http://127.0.0.1:{stack.upstream_port}"
                target = Target("direct", upstream, None, stack.upstream_pgid)
            elif name == "codey":
                target = start_codey(stack, args.access_log)
            else:
                assert litellm_bin is not None
                target = start_litellm(stack, litellm_bin, args.access_log)
            check_answer(target)
            for concurrency in CONCURRENCY:
                console.print(
                    f"round {round_}/{args.rounds}, {name}: concurrency {concurrency}, "
                    f"{args.duration} s ..."
                )
                results.append(measure(wrk, target, stack.upstream_pgid, concurrency, args))
            if name == "codey":
                for result, count in codey_cache_results(target).items():
                    cache_results[result] = cache_results.get(result, 0) + count
            if name != "direct":
                stop(stack, target.pgid)
    return results


# --- report ------------------------------------------------------------------------------------


def medians(results: list[Measurement]) -> list[Measurement]:
    """One row per target and concurrency: the median of each figure over the rounds (the
    errors summed, the others' CPU share the largest)."""
    rows = []
    for key in dict.fromkeys((m.target, m.concurrency) for m in results):
        runs = [m for m in results if (m.target, m.concurrency) == key]
        row = asdict(runs[0])
        for field in row:
            values = [getattr(m, field) for m in runs]
            if field == "errors":
                row[field] = sum(values)
            elif field == "other_cpu_share":
                row[field] = max(values)
            elif field == "requests":
                row[field] = int(statistics.median(values))
            elif field not in ("target", "concurrency") and None not in values:
                row[field] = round(statistics.median(values), 3)
        rows.append(Measurement(**row))
    return rows


def summarize(results: list[Measurement]) -> dict[str, Any]:
    """Added p50 at concurrency 1 per proxy, the rps ratio at 16, and the targets met or not."""
    by = {(m.target, m.concurrency): m for m in results}
    summary: dict[str, Any] = {}
    direct = by[("direct", 1)].p50_ms
    for proxy in ("codey", "litellm"):
        if (proxy, 1) in by:
            summary[f"{proxy}_added_p50_ms_c1"] = round(by[(proxy, 1)].p50_ms - direct, 3)
    if ("codey", 16) in by and ("litellm", 16) in by:
        ratio = by[("codey", 16)].rps / by[("litellm", 16)].rps
        summary["codey_over_litellm_rps_c16"] = round(ratio, 2)
        summary["target_rps_ratio_met"] = ratio >= RPS_RATIO_TARGET
    if "codey_added_p50_ms_c1" in summary:
        summary["target_added_p50_met"] = summary["codey_added_p50_ms_c1"] <= ADDED_P50_TARGET_MS
    return summary


def print_report(results: list[Measurement], summary: dict[str, Any], rounds: int) -> None:
    """The table, warnings about failed requests or a busy machine, the ratios and targets."""
    direct = {m.concurrency: m.p50_ms for m in results if m.target == "direct"}
    table = Table(
        "target", "conc.", "req/s", "p50 ms", "p90 ms", "p99 ms", "added p50 ms",
        "proxy CPU ms/req", "errors", "others' CPU",
        title="instant upstream, one worker, wrk, "
        + (f"median of {rounds} rounds" if rounds > 1 else "one round"),
    )  # fmt: skip
    for m in results:
        added = "" if m.target == "direct" else f"{m.p50_ms - direct[m.concurrency]:.2f}"
        cpu = "" if m.proxy_cpu_ms_per_request is None else f"{m.proxy_cpu_ms_per_request:.2f}"
        table.add_row(
            m.target, str(m.concurrency), f"{m.rps:,.0f}", f"{m.p50_ms:.2f}", f"{m.p90_ms:.2f}",
            f"{m.p99_ms:.2f}", added, cpu, str(m.errors), f"{m.other_cpu_share:.0%}",
        )  # fmt: skip
    console.print(table)
    if any(m.errors for m in results):
        console.print("[red]Some requests failed (wrk's errors column): see the logs.[/]")
    if max(m.other_cpu_share for m in results) > QUIET_SHARE:
        console.print(
            f"[yellow]Other processes used more than {QUIET_SHARE:.0%} of the CPUs during a "
            "run: the figures are not a clean comparison; run again on a quiet machine.[/]"
        )
    labels = {
        "codey_added_p50_ms_c1": f"codey adds at p50, c=1, ms (target <= {ADDED_P50_TARGET_MS})",
        "litellm_added_p50_ms_c1": "LiteLLM adds at p50, c=1, ms",
        "codey_over_litellm_rps_c16": f"codey/LiteLLM req/s, c=16 (target >= {RPS_RATIO_TARGET:g})",
        "codey_requests_by_cache_result": "codey requests by cache result",
        "target_added_p50_met": "latency target met",
        "target_rps_ratio_met": "throughput target met",
    }
    for key, label in labels.items():
        if key in summary:
            console.print(f"{label}: [bold]{summary[key]}[/]")


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and OS, as far as Linux's /proc tells."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    return {
        "cpu": model.group(1) if model else platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "platform": platform.platform(),
    }


def versions(wrk: str, litellm_bin: Path | None) -> dict[str, str | None]:
    """Versions of everything that runs, and codey's commit."""
    wrk_banner = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split()
    litellm = None
    if litellm_bin is not None:
        code = "import importlib.metadata as m; print(m.version('litellm'))"
        litellm = subprocess.run(
            [str(litellm_bin / "python"), "-c", code], capture_output=True, text=True
        ).stdout.strip()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "codey": version("codey"),
        "codey_commit": commit or None,
        "litellm": litellm,
        "python": platform.python_version(),
        "uvicorn": version("uvicorn"),
        "wrk": wrk_banner[1] if len(wrk_banner) > 1 else None,
    }


def plot(results: list[Measurement], path: Path) -> None:
    """Two bar charts: p50 latency at concurrency 1, the proxies' requests/s at 16."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    import matplotlib.pyplot as plt

    colors = {"direct": "#999999", "codey": "#2f6fde", "litellm": "#d9822b"}
    direct = next(m.rps for m in results if m.target == "direct" and m.concurrency == 16)
    latency = [m for m in results if m.concurrency == 1]
    throughput = [m for m in results if m.concurrency == 16 and m.target != "direct"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, rows, field, label in (
        (left, latency, "p50_ms", "p50 ms, concurrency 1"),
        (right, throughput, "rps", f"requests/s, concurrency 16 (upstream alone: {direct:,.0f})"),
    ):
        values = [getattr(m, field) for m in rows]
        bars = ax.bar([m.target for m in rows], values, color=[colors[m.target] for m in rows])
        ax.bar_label(bars, fmt="%.2f" if field == "p50_ms" else "%.0f", fontsize=8)
        ax.set_title(label, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so that every process started here is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wrk = ensure_wrk()
    litellm_bin = ensure_litellm() if "litellm" in args.targets else None
    started = datetime.now(UTC).isoformat(timespec="seconds")
    cache_results: dict[str, int] = {}
    runs = run_all(args, wrk, litellm_bin, cache_results)
    results = medians(runs)
    summary = summarize(results)
    if cache_results:
        summary["codey_requests_by_cache_result"] = cache_results
    print_report(results, summary, args.rounds)
    args.output.mkdir(parents=True, exist_ok=True)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": started,
        "machine": machine(),
        "versions": versions(wrk, litellm_bin),
        "load": {"tool": "wrk -t1", "duration_s": args.duration, "warmup_s": args.warmup,
                 "concurrency": list(CONCURRENCY), "rounds": args.rounds,
                 "access_log": args.access_log},
        "results": [asdict(m) for m in results],
        "runs": [asdict(m) for m in runs],
        "summary": summary,
    }  # fmt: skip
    (args.output / "proxy_overhead.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(results, args.output / "proxy_overhead.png")
    console.print(f"Wrote {args.output / 'proxy_overhead.json'} and proxy_overhead.png")


if __name__ == "__main__":
    main()
