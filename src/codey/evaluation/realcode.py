"""Fill-in-the-middle on real library code: lines and blocks masked in pure-Python packages
that codey pins (not the standard library, not HumanEval), chosen by a fixed seed.

`cases()` is the generator: the same packages at the same versions and the same seed give the
same cases on every machine. Three kinds of case:

- `line`: one statement line inside a function, the cursor at its indentation;
- `block`: a compound statement of 2-6 lines inside a function, the cursor at its indentation;
- `cross_file`: a line that calls a function the module imports from a sibling module; the
  sibling's definition of it is the case's other file (repository context).

Packages are split in two: the `dev` ones to look at while improving completion, the `held_out`
ones to report on without looking.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.metadata
import importlib.util
import itertools
import random
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from codey.backends.fim import SourceFile
from codey.services.completion import CompletionRequest
from codey.services.suggestions import first_line, misfit

if TYPE_CHECKING:
    from codey.runtime import Runtime

SEED = 20261203
DEV = ("rich", "httpx", "jinja2", "pydantic", "typer", "fastapi")
HELD_OUT = ("uvicorn", "redis", "tenacity", "limits", "prometheus_client", "pygments",
            "cachetools", "platformdirs")  # fmt: skip
DISTRIBUTIONS = {"prometheus_client": "prometheus-client"}
BEFORE, AFTER = 1500, 400
"""Characters of code kept before and after the cursor (whole lines)."""
Kind = Literal["line", "block", "cross_file"]
Split = Literal["dev", "held_out"]


@dataclass(frozen=True)
class Case:
    id: str
    """package/path:line"""
    kind: Kind
    split: Split
    path: str
    """The file, from the package's folder (`rich/console.py`)."""
    prefix: str
    suffix: str
    middle: str
    """What was masked: whole lines, the first without its indentation (it is in the prefix)."""
    files: tuple[SourceFile, ...] = field(default=())


def cases(
    lines: int = 300,
    blocks: int = 100,
    cross_file: int = 60,
    seed: int = SEED,
    packages: tuple[str, ...] = (*DEV, *HELD_OUT),
) -> list[Case]:
    """The case set: `lines` single lines, `blocks` blocks and `cross_file` cross-file calls,
    spread evenly over `packages`."""
    rng = random.Random(seed)
    chosen: list[Case] = []
    for kind, total in (("line", lines), ("block", blocks), ("cross_file", cross_file)):
        pools = [p for name in packages if (p := list(_candidates(name, kind)))]  # type: ignore[arg-type]
        share, extra = divmod(total, len(pools))
        for i, pool in enumerate(pools):
            chosen += rng.sample(pool, min(len(pool), share + (i < extra)))
    return chosen


def versions() -> dict[str, str]:
    """The version of each package the cases come from: other versions give other cases."""
    return {n: importlib.metadata.version(DISTRIBUTIONS.get(n, n)) for n in (*DEV, *HELD_OUT)}


def exact(case: Case, completion: str) -> bool:
    return first_line(completion) == first_line(case.middle)


def similarity(case: Case, completion: str) -> float:
    """Edit similarity of the first lines, 0..1 (difflib's ratio)."""
    return difflib.SequenceMatcher(None, first_line(completion), first_line(case.middle)).ratio()


def block_exact(case: Case, completion: str) -> bool:
    """Every line of the masked code, and nothing more, ignoring blank lines and spacing at
    the ends of lines."""

    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.strip("\n").splitlines() if line.strip()]

    expected = lines(case.middle)
    got = lines(completion)
    if got and expected:  # the first line's indentation is in the prefix
        got[0], expected[0] = got[0].strip(), expected[0].strip()
    return got == expected


def parses(case: Case, completion: str, source: str | None = None) -> bool:
    """Whether the file still parses with `completion` in place of the masked code (as an
    editor inserts it: on the masked line, whose line break stays)."""
    if not completion.endswith("\n"):
        completion += "\n"
    text = source if source is not None else _source(case)
    start = text.index(case.prefix + case.middle + case.suffix)
    whole = text[:start] + case.prefix + completion + case.suffix
    whole += text[start + len(case.prefix + case.middle + case.suffix) :]
    try:
        ast.parse(whole)
    except (SyntaxError, ValueError):
        return False
    return True


# -- the generator -----------------------------------------------------------------------------


@functools.cache
def _files(package: str) -> list[tuple[str, str]]:
    """(path, text) of the package's Python files, sorted by path."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return []
    folder = Path(spec.origin).parent
    found = []
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder.parent).as_posix()
        if "/tests/" in relative or "/vendor" in relative or "/_vendor" in relative:
            continue
        found.append((relative, path.read_text(encoding="utf-8", errors="replace")))
    return found


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function and method, nested ones too."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                todo.append(child)
                if not isinstance(child, ast.ClassDef):
                    yield child
            elif isinstance(child, ast.stmt):
                todo.append(child)


@functools.cache
def _parsed(package: str) -> list[tuple[str, str, ast.Module]]:
    parsed = []
    for path, text in _files(package):
        try:
            parsed.append((path, text, ast.parse(text)))
        except SyntaxError:
            continue
    return parsed


def _source(case: Case) -> str:
    package = case.path.split("/")[0]
    return dict(_files(package))[case.path]


def _candidates(package: str, kind: Kind) -> Iterator[Case]:
    split: Split = "dev" if package in DEV else "held_out"
    files = _files(package)
    by_module = {_module_name(path): (path, text) for path, text in files}
    for path, text, tree in _parsed(package):
        lines = text.splitlines(keepends=True)
        starts = list(itertools.accumulate((len(line) for line in lines), initial=0))
        imports = _sibling_imports(tree, _module_name(path)) if kind == "cross_file" else {}
        for function in _functions(tree):
            for node in _statements(function):
                if (kind == "line" and _is_line(node, lines)) or (
                    kind == "block" and _is_block(node)
                ):
                    yield _case(package, split, path, text, starts, node, kind)
                elif kind == "cross_file" and _is_line(node, lines):
                    called = _called_names(node) & imports.keys()
                    for name in sorted(called)[:1]:
                        definition = _definition(by_module, imports[name])
                        if definition is not None:
                            case = _case(package, split, path, text, starts, node, kind)
                            yield Case(**{**case.__dict__, "files": (definition,)})


def _statements(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.stmt]:
    """Statements in a function's body, nested ones too, but not those of nested functions or
    classes (walked on their own); the docstring is left out."""
    body = list(function.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return _nested(body)


def _nested(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        yield node
        for name in ("body", "orelse", "finalbody"):
            yield from _nested([c for c in getattr(node, name, []) if isinstance(c, ast.stmt)])
        for handler in getattr(node, "handlers", []):
            yield from _nested(handler.body)


def _is_line(node: ast.stmt, lines: list[str]) -> bool:
    if node.end_lineno != node.lineno or isinstance(node, ast.Pass):
        return False
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return False  # a docstring or a string standing alone
    text = lines[node.lineno - 1].strip()
    return len(text) >= 12 and node.col_offset == len(lines[node.lineno - 1]) - len(
        lines[node.lineno - 1].lstrip()
    )


def _is_block(node: ast.stmt) -> bool:
    compound = ast.If | ast.For | ast.While | ast.With | ast.Try | ast.AsyncFor | ast.AsyncWith
    end = node.end_lineno or node.lineno
    return isinstance(node, compound) and 2 <= end - node.lineno + 1 <= 6


def _case(
    package: str, split: Split, path: str, text: str, starts: list[int], node: ast.stmt,
    kind: Kind,
) -> Case:  # fmt: skip
    """`node`'s lines masked in `text` (`starts`: where each line begins)."""
    start, end = starts[node.lineno - 1], starts[node.end_lineno or node.lineno]
    cursor = start + node.col_offset
    prefix = _tail(text[:cursor], BEFORE)
    suffix = _head(text[end : end + 2 * AFTER], AFTER)
    return Case(f"{path}:{node.lineno}", kind, split, path, prefix, suffix, text[cursor:end])


def _tail(text: str, size: int) -> str:
    """The last whole lines of `text` within `size` characters, and its unfinished last line."""
    if len(text) <= size:
        return text
    cut = text.find("\n", len(text) - size)
    return text[cut + 1 :] if cut >= 0 else text[-size:]


def _head(text: str, size: int) -> str:
    if len(text) <= size:
        return text
    cut = text.rfind("\n", 0, size)
    return text[: cut + 1] if cut >= 0 else text[:size]


def _module_name(path: str) -> str:
    name = path.removesuffix(".py").replace("/", ".")
    return name.removesuffix(".__init__")


def _sibling_imports(tree: ast.Module, module: str) -> dict[str, str]:
    """Names imported at the top of a module from other modules of its package, and whence."""
    package = module.rsplit(".", 1)[0] if "." in module else module
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            source = ".".join([*base, node.module])
        elif node.module.split(".")[0] == module.split(".")[0]:
            source = node.module
        else:
            continue
        for alias in node.names:
            found[alias.asname or alias.name] = f"{source}:{alias.name}"
    return found


def _called_names(node: ast.stmt) -> set[str]:
    return {
        call.func.id
        for call in ast.walk(node)
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
    }


def _definition(by_module: dict[str, tuple[str, str]], where: str) -> SourceFile | None:
    """The function or class `where` names (module:name), with what its module imports."""
    module, name = where.split(":")
    if module not in by_module:
        return None
    path, text = by_module[module]
    tree = next((t for p, _, t in _parsed(path.split("/")[0]) if p == path), None)
    if tree is None:
        return None
    lines = text.splitlines(keepends=True)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and (
            node.name == name
        ):
            start = node.lineno - 1 - len(node.decorator_list)
            end = min(node.end_lineno or node.lineno, start + 40)
            return SourceFile(path, "".join(lines[start:end]))
    return None


# -- running -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One case through the completion service: its top suggestion as the service ranked them
    before misfits were dropped (`before`) and after, and for a cross-file case, after without
    the other file."""

    id: str
    kind: Kind
    split: Split
    want: str
    before: str
    after: str
    alone: str | None
    exact_before: bool
    exact_after: bool
    exact_alone: bool | None
    similarity_after: float
    parses_after: bool
    seconds: float


async def evaluate(
    runtime: Runtime,
    chosen: list[Case],
    progress: Callable[[int], None] = lambda n: None,
    record: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """Each case through `runtime.completion` with its defaults (three ranked suggestions)."""
    outcomes = []
    for case in chosen:
        started = time.perf_counter()
        ranked = await _suggestions(runtime, case, case.files)
        seconds = time.perf_counter() - started
        fitting = [s for s in ranked if not misfit(s, case.prefix, case.suffix)]
        before, after = (ranked or [""])[0], (fitting or [""])[0]
        alone = None
        if case.files:
            alone_ranked = await _suggestions(runtime, case, ())
            fits = [s for s in alone_ranked if not misfit(s, case.prefix, case.suffix)]
            alone = (fits or [""])[0]
        outcomes.append(
            Outcome(
                case.id, case.kind, case.split, case.middle, before, after, alone,
                exact(case, before), exact(case, after),
                None if alone is None else exact(case, alone),
                round(similarity(case, after), 4), parses(case, after), round(seconds, 3),
            )
        )  # fmt: skip
        record(outcomes[-1])
        progress(1)
    return outcomes


async def _suggestions(runtime: Runtime, case: Case, files: tuple[SourceFile, ...]) -> list[str]:
    request = CompletionRequest(
        case.prefix, case.suffix, files=files, path=case.path if files else "",
        repo=case.path.split("/")[0], drop_misfits=False,
    )  # fmt: skip
    result = await runtime.completion.complete(request)
    return [s.completion for s in result.suggestions]


def summary(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Rates per kind of case and split, and over all."""
    rows = []
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for o in outcomes:
        for key in ((o.kind, o.split), (o.kind, "all")):
            groups.setdefault(key, []).append(o)
    for (kind, split), group in sorted(groups.items()):
        row: dict[str, Any] = {"kind": kind, "split": split, "cases": len(group)}
        row["exact_before"] = _rate(o.exact_before for o in group)
        row["exact_after"] = _rate(o.exact_after for o in group)
        if kind == "cross_file":
            row["exact_without_files"] = _rate(bool(o.exact_alone) for o in group)
        row["similarity_after"] = round(statistics.fmean(o.similarity_after for o in group), 4)
        row["parses_after"] = _rate(o.parses_after for o in group)
        row["p50_seconds"] = round(statistics.median(o.seconds for o in group), 2)
        rows.append(row)
    return rows


def _rate(values: Iterable[bool]) -> float:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else 0.0
