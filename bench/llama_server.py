"""llama.cpp's own server on codey's GGUF: the anchor the engine is measured against.

`build()` compiles `llama-server` from the vendor/llama.cpp tree of the llama-cpp-python sdist
codey pins, with the compiler flags codey's engine is built with (every native instruction but
AMX), so both sides run the same llama.cpp built alike. The sdist, the build tree and the binary
live in the cache folder only (~/.cache/codey/bench/llama-server); nothing of llama.cpp enters
the repository, and codey never needs it at run time. `serve()` runs the binary on a model until
its block ends.

    .venv/bin/python bench/llama_server.py build                # prints the binary's path
    .venv/bin/python bench/llama_server.py serve --parallel 4   # until Ctrl-C
    .venv/bin/python bench/llama_server.py serve --parallel 4 --cache-reuse 256   # extras pass on
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import platformdirs
from rich.console import Console

from codey.backends.engine_build import BUILD_ENV, PINNED_VERSION
from codey.config import load_settings
from codey.provision.assemble import locate_model

CACHE_DIR = platformdirs.user_cache_path("codey") / "bench" / "llama-server"
SLOT_CONTEXT = 8192
"""Tokens of context per slot, as codey's engine has (`model.context_length`)."""
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_CURL=OFF",  # deprecated and ignored in this llama.cpp; kept for older trees
    "-DLLAMA_OPENSSL=OFF",  # HTTPS for model downloads, not needed for a local file
    "-DLLAMA_BUILD_UI=OFF",  # the web UI needs npm ...
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # ... or a download at build time; the server runs without
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary
)
TARGET = "llama-server"

console = Console(stderr=True)


def build(cache_dir: Path = CACHE_DIR, target: str = TARGET) -> Path:
    """The `target` binary (`llama-server`, or another tool of the tree such as
    `llama-batched-bench`) in `cache_dir`, built first if it is not there (minutes)."""
    binary = cache_dir / "build" / "bin" / target
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    cache_dir.mkdir(parents=True, exist_ok=True)
    source = _source_tree(cache_dir) / "vendor" / "llama.cpp"
    env = {**os.environ, **BUILD_ENV}
    log = cache_dir / "build.log"
    started = time.perf_counter()
    with log.open("a") as out:
        out.write(f"CFLAGS={BUILD_ENV['CFLAGS']!r} CXXFLAGS={BUILD_ENV['CXXFLAGS']!r}\n")
        configure = ["cmake", "-S", str(source), "-B", str(binary.parents[1]), *CMAKE_OPTIONS]
        _run(configure, env, out, "Configuring llama.cpp")
        jobs = str(os.cpu_count() or 2)
        compile_ = ["cmake", "--build", str(binary.parents[1]), "--target", target, "-j", jobs]
        _run(compile_, env, out, f"Building {target}")
    console.print(f"Built {binary} in {time.perf_counter() - started:.0f} s (log: {log})")
    return binary


def _source_tree(cache_dir: Path) -> Path:
    """The pinned llama-cpp-python sdist, downloaded and unpacked in `cache_dir`."""
    unpacked = cache_dir / "src"
    trees = sorted(unpacked.glob(f"llama*cpp*python-{PINNED_VERSION}"))
    if trees and (trees[0] / "vendor" / "llama.cpp" / "CMakeLists.txt").is_file():
        return trees[0]
    sdists = sorted(cache_dir.glob(f"llama*cpp*python-{PINNED_VERSION}.tar.gz"))
    if not sdists:
        with console.status(f"Downloading the llama-cpp-python {PINNED_VERSION} sdist ..."):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-binary",
                    ":all:",
                    "--no-deps",
                    f"llama-cpp-python=={PINNED_VERSION}",
                    "-d",
                    str(cache_dir),
                ],
                check=True,
            )
        sdists = sorted(cache_dir.glob(f"llama*cpp*python-{PINNED_VERSION}.tar.gz"))
    with console.status(f"Unpacking {sdists[0].name} ..."), tarfile.open(sdists[0]) as archive:
        shutil.rmtree(unpacked, ignore_errors=True)
        archive.extractall(unpacked, filter="data")
    return next(unpacked.glob(f"llama*cpp*python-{PINNED_VERSION}"))


def _run(command: list[str], env: dict[str, str], log: TextIO, title: str) -> None:
    """Run a build step, its output into `log`, its latest line under a spinner; raise with the
    last lines if it fails."""
    log.write(f"$ {' '.join(command)}\n")
    tail: deque[str] = deque(maxlen=30)
    started = time.perf_counter()
    with (
        console.status(title) as status,
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            tail.append(line.rstrip())
            elapsed = time.perf_counter() - started
            status.update(f"{title} ({elapsed:.0f} s) {line.strip()[:90]}")
    if process.returncode != 0:
        console.print("\n".join(tail), markup=False, highlight=False)
        raise RuntimeError(f"{title} failed ({process.returncode}): {' '.join(command)}")
    console.print(f"{title}: done in {time.perf_counter() - started:.0f} s")


@contextmanager
def serve(
    binary: Path,
    model: Path,
    *,
    port: int = 8090,
    parallel: int = 1,
    ctx_size: int | None = None,
    threads: int | None = None,
    extra_args: Sequence[str] = (),
    host: str = "127.0.0.1",
    log: Path | None = None,
    ready_timeout: float = 120.0,
) -> Iterator[str]:
    """Run `llama-server` on `model` with `parallel` slots of SLOT_CONTEXT tokens each (unless
    `ctx_size` says otherwise), wait until GET /health answers 200, yield the base URL, and stop
    the server when the block ends. Its output goes to `log` (a file in the cache by default)."""
    threads = threads or os.cpu_count() or 1
    command = [
        str(binary),
        "-m",
        str(model),
        "--host",
        host,
        "--port",
        str(port),
        "-np",
        str(parallel),
        "-c",
        str(ctx_size or SLOT_CONTEXT * parallel),
        "-t",
        str(threads),
        "--threads-batch",
        str(threads),
        *extra_args,
    ]
    log = log or CACHE_DIR / f"serve-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://{host}:{port}"
    with log.open("w") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_healthy(process, url, ready_timeout, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(process: subprocess.Popen[bytes], url: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama-server exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # not listening yet, or 503 while the model loads
        time.sleep(0.2)
    raise TimeoutError(f"llama-server did not become healthy within {timeout:.0f} s; see {log}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build llama-server (once) and print its path")
    run = commands.add_parser(
        "serve",
        help="serve codey's model until Ctrl-C; unknown options go to llama-server",
        allow_abbrev=False,
    )
    run.add_argument("--model", type=Path, help="GGUF file (default: codey's model)")
    run.add_argument("--port", type=int, default=8090)
    run.add_argument("--parallel", type=int, default=1, help="slots (-np)")
    run.add_argument("--ctx-size", type=int, help=f"total context (default {SLOT_CONTEXT} a slot)")
    run.add_argument("--threads", type=int, help="default: codey's model.threads")
    args, extra = parser.parse_known_args(argv)
    if args.command == "build":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        print(build(args.cache_dir))
        return
    binary = build(args.cache_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the server on kill, too
    m = load_settings().model  # codey's own model file and thread count are the defaults
    with serve(
        binary,
        args.model or locate_model(m.path, m.sha256, m.cache_dir).path,
        port=args.port,
        parallel=args.parallel,
        ctx_size=args.ctx_size,
        threads=args.threads or m.threads,
        extra_args=extra,
    ) as url:
        console.print(f"llama-server at {url} ({args.parallel} slots); Ctrl-C stops it")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("stopping")


if __name__ == "__main__":
    main()
