"""Which other files of a project to show the model beside the file being edited: the files
named by hand, the files it imports, and the files changed most recently.

Files come back least relevant first, as `InfillPrompt.files` takes them: the engine drops
them from the front to keep within the budget, and the nearest end up next to the cursor.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from codey.backends.fim import SourceFile

ROOT_MARKERS = (".git", "pyproject.toml", "setup.py", "package.json", "go.mod", "Cargo.toml")
SKIPPED = {".git", ".venv", "venv", "node_modules", "__pycache__", "build", "dist", ".tox"}
MAX_FILE_BYTES = 100_000
MAX_SCANNED = 5_000
"""Files looked at for recent changes at most, so that a huge folder costs little."""
RECENT = 4
"""Recently changed files of the same kind taken at most, beside the imported ones."""

_PY_FROM = re.compile(r"^\s*from\s+(\.*[\w.]*)\s+import\s+\(?([\w, \t]+)", re.MULTILINE)
_PY_IMPORT = re.compile(r"^\s*import\s+([\w.]+)", re.MULTILINE)
_JS_IMPORT = re.compile(r"""(?:from\s+|require\(\s*|import\s*\(?\s*)["'](\.{1,2}/[^"']+)["']""")
_JS_SUFFIXES = (".ts", ".tsx", ".js", ".jsx", ".mjs")


def project_root(file: Path) -> Path:
    """The nearest folder above `file` that holds a repository or package marker; else the
    file's own folder."""
    for folder in file.resolve().parents:
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return file.resolve().parent


def neighbours(
    file: Path, root: Path, chosen: Sequence[Path] = (), *, related: bool = True
) -> list[SourceFile]:
    """Other files to show the model, least relevant first: recently changed files of the same
    kind and the files `file` imports (unless not `related`), then `chosen` (named by the
    user, the first nearest the cursor), each once."""
    file, root = file.resolve(), root.resolve()
    found = [*imported(file, root), *recent_files(file, root, RECENT)] if related else []
    picked: list[Path] = []
    for path in [*chosen, *found]:
        path = path.resolve()
        if path != file and path not in picked and path.is_file():
            picked.append(path)
    return [SourceFile(relative(path, root), _read(path)) for path in reversed(picked)]


def imported(file: Path, root: Path) -> list[Path]:
    """The project's own files that `file` imports (Python modules, relative JS/TS paths)."""
    text = _read(file)
    if file.suffix == ".py":
        return [p for name in _python_imports(text) if (p := _module(name, file, root))]
    if file.suffix in _JS_SUFFIXES:
        return [p for spec in _JS_IMPORT.findall(text) if (p := _script(spec, file))]
    return []


def recent_files(file: Path, root: Path, count: int) -> list[Path]:
    """The `count` files with the same suffix as `file` under `root` changed last, newest
    first."""
    walked = itertools.islice(_walk(root), MAX_SCANNED)
    found = [p for p in walked if p.suffix == file.suffix and p != file]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return found[:count]


def _python_imports(text: str) -> Iterator[str]:
    """Modules a Python file imports; for `from m import a`, `m.a` (a module, perhaps) first."""
    for module, names in _PY_FROM.findall(text):
        for name in names.replace(" ", "").replace("\t", "").split(","):
            if name:
                yield f"{module}.{name}" if not module.endswith(".") else f"{module}{name}"
        yield module
    yield from _PY_IMPORT.findall(text)


def _module(name: str, file: Path, root: Path) -> Path | None:
    """The file of module `name` (dots in front: relative to `file`), in the project."""
    dots = len(name) - len(name.lstrip("."))
    parts = [p for p in name.lstrip(".").split(".") if p]
    if dots > len(file.parents):
        return None
    bases = [file.parents[dots - 1]] if dots else [root, root / "src"]
    for base in bases:
        stem = base.joinpath(*parts)
        for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
            if candidate.is_file() and candidate.resolve().is_relative_to(root):
                return candidate
    return None


def _script(spec: str, file: Path) -> Path | None:
    stem = file.parent / spec
    for candidate in (stem, *(stem.with_name(stem.name + s) for s in _JS_SUFFIXES)):
        if candidate.is_file():
            return candidate
    return None


def _walk(root: Path) -> Iterator[Path]:
    for path in root.iterdir():
        if path.name in SKIPPED or path.name.startswith("."):
            continue
        if path.is_dir():
            yield from _walk(path)
        elif path.is_file() and path.stat().st_size <= MAX_FILE_BYTES:
            yield path


def relative(path: Path, root: Path) -> str:
    """`path` as the repository format names it: from the project's root, with slashes."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name


def _read(path: Path) -> str:
    return path.read_text(errors="replace")[:MAX_FILE_BYTES]
