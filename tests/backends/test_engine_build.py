"""The engine build is safe on every x86-64 CPU: these check the library and the recipe, never
the CPU the tests happen to run on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codey.backends import engine_build
from codey.backends.engine_build import NO_AMX, has_amx_instructions, inspect

ROOT = Path(__file__).resolve().parents[2]
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def amx_macros(flags: list[str]) -> list[str]:
    """The AMX macros gcc defines when compiling for Sapphire Rapids with `flags`."""
    out = subprocess.run(
        ["gcc", *flags, "-dM", "-E", "-"], input="", capture_output=True, text=True, check=True
    ).stdout
    return sorted(line.split()[1] for line in out.splitlines() if "__AMX" in line)


def test_the_installed_engine_has_no_amx_compiled_in() -> None:
    info = inspect()
    assert info.pinned, info.version
    assert not info.amx_compiled, "ggml's CPU backend was compiled with __AMX_INT8__"
    assert info.amx_instructions is False, f"AMX tile instructions in {info.library}"
    assert "AMX" not in info.system_info


@needs_gcc
def test_the_build_flags_keep_amx_out_even_when_compiling_for_an_amx_cpu() -> None:
    # -march=native comes after CFLAGS in llama.cpp's build; explicit -mno-* still win.
    assert amx_macros(["-march=sapphirerapids"]) == ["__AMX_BF16__", "__AMX_INT8__", "__AMX_TILE__"]
    assert amx_macros([*NO_AMX.split(), "-march=sapphirerapids"]) == []


@needs_gcc
def test_the_disassembly_check_finds_amx_code(tmp_path: Path) -> None:
    plain = "int add(int a, int b) { return a + b; }\n"
    tiles = "#include <immintrin.h>\nvoid zero(void) { _tile_zero(0); _tile_release(); }\n"
    found = {}
    for name, code, flags in (("amx", tiles + plain, ["-mamx-tile"]), ("plain", plain, [])):
        source, library = tmp_path / f"{name}.c", tmp_path / f"lib{name}.so"
        source.write_text(code)
        command = ["gcc", "-O2", "-shared", "-fPIC", *flags, "-o", str(library), str(source)]
        subprocess.run(command, check=True)
        found[name] = has_amx_instructions(library)
    assert found == {"amx": True, "plain": False}


def test_setup_checks_what_it_installed_with_the_same_flags() -> None:
    script = ROOT / "src" / "codey" / "backends" / "engine_build.py"
    flags = subprocess.run(
        [sys.executable, "-P", str(script), "--flags"], capture_output=True, text=True, check=True
    )
    assert flags.stdout.strip() == NO_AMX
    check = subprocess.run([sys.executable, "-P", str(script)], capture_output=True, text=True)
    report = json.loads(check.stdout)
    assert check.returncode == 0, report
    assert report["safe"] and report["pinned"] and not report["amx_compiled"]
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "engine_build.py --flags" in setup and "--force-reinstall" in setup


def test_a_build_reported_with_amx_is_not_safe() -> None:
    info = engine_build.BuildInfo("0.3.36", "lib", True, None, "")
    assert not info.safe
    assert not engine_build.BuildInfo("0.3.36", "lib", False, True, "").safe
    assert engine_build.BuildInfo("0.3.36", "lib", False, None, "").safe
