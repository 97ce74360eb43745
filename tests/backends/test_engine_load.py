"""An engine process that cannot load its model says why; no model needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from codey.backends.engine_process import EngineProcess, EngineSpec
from codey.errors import BackendError


async def test_an_engine_that_cannot_load_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    engine = EngineProcess(EngineSpec(str(broken), 512, 1, 64))
    with pytest.raises(BackendError, match="could not load"):
        engine.start()
