"""Which other files of a project the model sees beside the one being edited."""

from __future__ import annotations

import os
from pathlib import Path

from codey.services.repository import imported, neighbours, project_root


def write(path: Path, text: str, mtime: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_the_root_is_the_nearest_folder_with_a_project_marker(tmp_path: Path) -> None:
    write(tmp_path / "app" / "pyproject.toml", "")
    file = write(tmp_path / "app" / "src" / "app" / "main.py", "")
    assert project_root(file) == (tmp_path / "app").resolve()
    loose = write(tmp_path / "loose" / "x.py", "")
    assert project_root(loose) in {loose.parent.resolve(), *loose.resolve().parents}


def test_python_imports_resolve_to_the_projects_own_files(tmp_path: Path) -> None:
    root = tmp_path
    util = write(root / "src" / "pkg" / "util.py", "def helper(): ...\n")
    models = write(root / "src" / "pkg" / "models" / "__init__.py", "class User: ...\n")
    sibling = write(root / "src" / "pkg" / "sibling.py", "X = 1\n")
    main = write(
        root / "src" / "pkg" / "main.py",
        "import os\nimport pkg.util\nfrom pkg.models import User\nfrom . import sibling\n"
        "from .missing import nothing\n",
    )
    found = imported(main, root)
    assert util in found and models in found and sibling in found
    assert all(p.is_relative_to(root) for p in found)  # os and the missing one are not


def test_script_imports_resolve_relative_paths(tmp_path: Path) -> None:
    api = write(tmp_path / "web" / "api.ts", "export const get = () => 1;\n")
    page = write(
        tmp_path / "web" / "page.tsx", 'import { get } from "./api";\nimport React from "react";\n'
    )
    assert imported(page, tmp_path) == [api]


def test_neighbours_come_least_relevant_first_and_each_once(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "")
    write(tmp_path / "old.py", "OLD = 1\n", mtime=1_000)
    write(tmp_path / "new.py", "NEW = 1\n", mtime=2_000)
    write(tmp_path / "dep.py", "DEP = 1\n", mtime=500)
    chosen = write(tmp_path / "notes.py", "NOTE = 1\n", mtime=3_000)
    file = write(tmp_path / "main.py", "import dep\n", mtime=4_000)
    write(tmp_path / "node_modules" / "lib.py", "skip me\n", mtime=5_000)
    files = neighbours(file, tmp_path, [chosen])
    # recent ones (oldest first), then the import, then the one named by hand, next to the cursor
    assert [f.path for f in files] == ["old.py", "new.py", "dep.py", "notes.py"]
    assert files[-1].text == "NOTE = 1\n"
    assert [f.path for f in neighbours(file, tmp_path, [chosen], related=False)] == ["notes.py"]
