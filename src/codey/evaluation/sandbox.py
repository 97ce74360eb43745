"""Run untrusted generated code with its tests in a separate, limited Python process."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass

# The child limits itself before it runs the program: address space, CPU seconds, file size,
# no core dumps. (preexec_fn would do it too, but is unsafe when the parent runs threads.)
_BOOTSTRAP = """
import resource, sys
memory, seconds = int(sys.argv[1]) * 1024 * 1024, int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
program = sys.argv[3]
del sys.argv[1:], resource
exec(compile(program, "<generated>", "exec"), {"__name__": "__main__"})
"""


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    """'passed', 'failed: <last line of the error>' or 'timed out'."""


def run_program(program: str, *, timeout: float = 10.0, memory_mb: int = 512) -> Verdict:
    """Run `program` in an isolated interpreter (-I: no user site, no environment paths) in an
    empty temporary directory, in its own session, with time and memory limits."""
    command = [
        sys.executable,
        "-I",
        "-c",
        _BOOTSTRAP,
        str(memory_mb),
        str(int(timeout) + 1),
        program,
    ]
    with tempfile.TemporaryDirectory(prefix="codey-sandbox-") as workdir:
        try:
            run = subprocess.run(
                command,
                cwd=workdir,
                env={"PATH": "/usr/bin:/bin", "HOME": workdir, "PYTHONHASHSEED": "0"},
                capture_output=True,
                text=True,
                timeout=timeout,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return Verdict(False, "timed out")
    if run.returncode == 0:
        return Verdict(True, "passed")
    lines = [ln for ln in run.stderr.strip().splitlines() if ln.strip()]
    return Verdict(False, "failed: " + (lines[-1][:200] if lines else f"exit {run.returncode}"))
