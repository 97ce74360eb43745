"""What a user needs to know when the embedded engine misbehaves, each with the fix.

Every check runs in this process except the engine itself, which loads and decodes in a child,
so that the report survives the crash it is looking for.
"""

from __future__ import annotations

import asyncio
import platform
import time
from dataclasses import dataclass, field
from typing import Any

from codey.backends.base import SamplingParams
from codey.backends.engine_build import BUILD_ENV, PINNED_VERSION, cpu_flags, inspect
from codey.backends.engine_process import EngineProcess, EngineSpec, RestartPolicy
from codey.backends.vocabulary import Vocabulary
from codey.config import Settings
from codey.errors import CodeyError
from codey.provision.assemble import ModelFile, Progress, locate_model
from codey.provision.catalogue import DEFAULT, find
from codey.store.redis import connect as connect_redis
from codey.store.sqlite import Database

REBUILD = (
    " ".join(f'{k}="{v}"' for k, v in BUILD_ENV.items())
    + f" .venv/bin/pip install --no-cache-dir --force-reinstall --no-deps "
    f"llama-cpp-python=={PINNED_VERSION}   (or: bash scripts/setup.sh)"
)
_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def diagnose(settings: Settings, progress: Progress | None = None) -> list[Check]:
    """Every check in order; the engine check runs only once the build and model pass."""
    checks = [check_cpu(), check_build()]
    model = check_model(settings, progress)
    checks.append(model)
    if checks[1].ok and model.ok:
        checks.append(check_engine(settings, model.facts["model"]))
    checks.append(check_store(settings))
    checks.append(check_redis(settings))
    return checks


def check_cpu() -> Check:
    flags = cpu_flags()
    present = [f for f in _FEATURES if f in flags]
    detail = f"{platform.processor() or platform.machine()}: " + (", ".join(present) or "none")
    return Check("cpu", True, detail, facts={"features": present})


def check_build() -> Check:
    try:
        info = inspect()
    except (ImportError, FileNotFoundError) as exc:
        return Check("engine build", False, f"llama-cpp-python is not usable: {exc}", REBUILD)
    facts = {
        "version": info.version,
        "amx_compiled": info.amx_compiled,
        "amx_instructions": info.amx_instructions,
        "system_info": info.system_info,
    }
    if not info.safe:
        detail = "llama.cpp was built with AMX, which crashes in its first matrix multiply"
        return Check("engine build", False, detail, REBUILD, facts)
    if not info.pinned:
        detail = f"llama-cpp-python {info.version}, codey is tested with {PINNED_VERSION}"
        return Check("engine build", False, detail, REBUILD, facts)
    return Check("engine build", True, f"llama-cpp-python {info.version}, no AMX", facts=facts)


def check_model(settings: Settings, progress: Progress | None) -> Check:
    """Every model file the embedded engine would load: the configured one, or each registry
    model a service runs on; the engine check loads the first."""
    m = settings.model
    registry = [find(name) for name in settings.registry_models()] or [DEFAULT]
    try:
        if m.path is not None:
            models = [locate_model(m.path, m.sha256, m.cache_dir, progress)]
        else:
            models = [locate_model(None, None, m.cache_dir, progress, r) for r in registry]
    except CodeyError as exc:
        return Check("model file", False, exc.message, exc.hint)
    detail = ", ".join(f"{model.path} ({model.size:,} bytes, verified)" for model in models)
    return Check("model file", True, detail, facts={"model": models[0]})


def check_engine(settings: Settings, model: ModelFile, tokens: int = 32) -> Check:
    """Load the model in an engine process and decode `tokens` tokens greedily."""
    spec = EngineSpec.of(model.path, settings.model)
    engine = EngineProcess(spec, policy=RestartPolicy(restart_limit=1))
    fix = (
        "Run `codey doctor` again after the fix above; if the build passed, try "
        "CODEY_MODEL__EXTRA_BUFFERS=false and report the crash."
    )
    try:
        engine.start()
    except CodeyError as exc:
        return Check("engine", False, exc.message, fix)
    try:
        vocabulary = Vocabulary(model.path)
        prompt = vocabulary.tokenize("def fibonacci(n):\n", special=False, add_bos=True)
        vocabulary.close()
        started = time.perf_counter()
        choices = asyncio.run(engine.run(prompt, SamplingParams(tokens, temperature=0), ()))
        seconds = time.perf_counter() - started
    except CodeyError as exc:
        return Check("engine", False, exc.message, fix, dict(engine.info))
    finally:
        engine.close()
    made = sum(len(c.tokens) for c in choices)
    info = engine.info
    facts = {**info, "tokens": made, "tokens_per_s": round(made / seconds, 1)}
    detail = (
        f"loaded in {info['load_seconds']:.1f} s; weights in {', '.join(info['buffer_types'])}; "
        f"{info['threads']} threads, context {info['context_length']}; "
        f"{made} tokens at {facts['tokens_per_s']} tokens/s (prompt included)"
    )
    return Check("engine", True, detail, facts=facts)


def check_store(settings: Settings) -> Check:
    path = settings.store.sqlite_path
    try:
        database = Database(path)
        database.ping()
        database.close()
    except Exception as exc:
        fix = "Make its folder writable, or set CODEY_STORE__SQLITE_PATH."
        return Check("store", False, f"{path}: {exc}", fix)
    return Check("store", True, f"SQLite at {path}")


def check_redis(settings: Settings) -> Check:
    url = settings.redis_url
    if url is None:
        return Check("redis", True, "not configured (one replica, state in SQLite)")

    async def ping() -> None:
        client = connect_redis(url)
        try:
            await asyncio.wait_for(client.ping(), 5)
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except Exception as exc:
        return Check("redis", False, f"{url}: {exc}", "Start Redis, or fix CODEY_REDIS_URL.")
    return Check("redis", True, f"{url} answers")


def verdict(checks: list[Check]) -> tuple[bool, list[str]]:
    """Whether all is well, and the fixes to apply, in order."""
    fixes = [f"{c.name}: {c.fix}" for c in checks if not c.ok and c.fix]
    return all(c.ok for c in checks), fixes
