"""What the installed llama.cpp build can do, and the recipe that makes it safe on every x86-64.

On CPUs with AMX (Intel Sapphire/Granite Rapids), a `-march=native` build of llama.cpp compiles
in its AMX buffer type, which repacks the weights at load and crashes in the first matrix
multiply (ggml-org/llama.cpp issue 20824). codey builds llama-cpp-python with AMX switched off
(`BUILD_FLAGS`), keeps every other native instruction, and checks the library it got rather than
the flags it asked for, because pip's wheel cache does not key on build flags.

Imports nothing of codey's, so that setup can run it before codey is installed:

    python -P src/codey/backends/engine_build.py           # exit 1 unless pinned and AMX-free
    python -P src/codey/backends/engine_build.py --flags   # the compiler flags to build with
"""

from __future__ import annotations

import ctypes
import json
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

PINNED_VERSION = "0.3.36"
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
"""Explicit -mno-* flags win over a later -march=native, whatever order the compiler sees."""
BUILD_ENV = {"CFLAGS": NO_AMX, "CXXFLAGS": NO_AMX}
"""The environment setup builds llama-cpp-python in."""
_AMX_MNEMONICS = (
    "ldtilecfg",
    "tileloadd",
    "tdpbssd",
    "tdpbusd",
    "tdpbf16ps",
    "tilezero",
    "tilerelease",
)


@dataclass(frozen=True)
class BuildInfo:
    """The installed llama-cpp-python and what its CPU library was compiled with."""

    version: str
    library: str
    amx_compiled: bool
    """ggml's own answer: whether __AMX_INT8__ was defined when its CPU backend was built."""
    amx_instructions: bool | None
    """Whether the library's machine code holds AMX tile instructions; None without objdump."""
    system_info: str

    @property
    def safe(self) -> bool:
        return not self.amx_compiled and not self.amx_instructions

    @property
    def pinned(self) -> bool:
        return self.version == PINNED_VERSION


def cpu_library() -> Path:
    """ggml's CPU backend inside the installed llama_cpp package."""
    files = metadata.files("llama-cpp-python") or []
    for entry in files:
        name = Path(str(entry)).name
        if name.startswith("libggml-cpu") and ".so" in name:
            return Path(str(entry.locate()))
    raise FileNotFoundError("llama-cpp-python has no libggml-cpu library")


def inspect(*, disassemble: bool = True) -> BuildInfo:
    """Read the build without loading a model; safe to run on any CPU, AMX or not.
    `disassemble` also searches the machine code (about a second)."""
    import llama_cpp  # the library loads here, and with it ggml's CPU backend

    library = cpu_library()
    ggml_cpu = ctypes.CDLL(str(library))
    ggml_cpu.ggml_cpu_has_amx_int8.restype = ctypes.c_int
    return BuildInfo(
        version=metadata.version("llama-cpp-python"),
        library=str(library),
        amx_compiled=bool(ggml_cpu.ggml_cpu_has_amx_int8()),
        amx_instructions=has_amx_instructions(library) if disassemble else None,
        system_info=llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    )


def has_amx_instructions(library: Path) -> bool | None:
    """Disassemble `library` and look for AMX tile instructions; None when objdump is missing."""
    objdump = shutil.which("objdump")
    if objdump is None:
        return None
    out = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", str(library)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return any(f"\t{m}" in out or f" {m} " in out for m in _AMX_MNEMONICS)


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux names them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def main(argv: list[str]) -> int:
    if argv == ["--flags"]:
        print(NO_AMX)
        return 0
    try:
        info = inspect()
    except (ImportError, FileNotFoundError, metadata.PackageNotFoundError) as exc:
        print(json.dumps({"installed": False, "error": str(exc)}))
        return 1
    report = {
        "installed": True,
        **asdict(info),
        "safe": info.safe,
        "pinned": info.pinned,
        "machine": platform.machine(),
    }
    print(json.dumps(report))
    return 0 if info.safe and info.pinned else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
