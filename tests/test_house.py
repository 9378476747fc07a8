"""The house rules of docs/design.md, checked: layers that only point down (import-linter's contract in
pyproject.toml), no import cycle (grimp, which import-linter builds on), ruff clean, no function over 80 lines,
file I/O in one place, every task matching the Task interface, and docs that name only what exists."""

from __future__ import annotations

import ast
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "vitlab"
MAX_FUNCTION_LINES = 80


def _tool(name: str) -> str:
    """The console script ``name`` of the test environment (beside its python), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; pip install -e '.[dev]'")
    return found


def _cycles(graph) -> list[list[str]]:  # noqa: ANN001 - a grimp ImportGraph
    """The strongly connected components of more than one module (Tarjan), i.e. the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_in_vitlab() -> None:
    grimp = pytest.importorskip("grimp")
    assert _cycles(grimp.build_graph("vitlab")) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    class Graph:  # a -> b -> c -> a, and d -> a
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
        modules = set(edges)

        def find_modules_directly_imported_by(self, module: str) -> set[str]:
            return self.edges[module]

    assert _cycles(Graph()) == [["a", "b", "c"]]


def test_layers_only_point_down() -> None:
    result = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken", result.stdout), result.stdout[-2000:]


def test_ruff_is_clean() -> None:
    result = subprocess.run([_tool("ruff"), "check", "--no-cache", "src", "tests", "benchmarks", "tools"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _functions(tree: ast.AST):  # noqa: ANN202
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_in_src_is_longer_than_80_lines() -> None:
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in sorted(SRC.rglob("*.py"))
            for node in _functions(ast.parse(path.read_text(encoding="utf-8")))
            if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_atomic_writes_and_hashing_exist_once_in_vitlab_io() -> None:
    """Temporary files, renames into place and hashing of files live in vitlab/io.py; every writer calls it."""
    patterns = {"mkstemp / mkdtemp beside a target": r"\bmk[sd]temp\(", "a file-hashing function": r"def \w*(?:sha256|file_digest)\w*\(",
                "os.fsync": r"\bos\.fsync\("}
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "io.py" and path.parent == SRC:
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(ROOT)}: {name}" for name, pattern in patterns.items() if re.search(pattern, text)]
    assert offenders == []


def test_every_task_matches_the_task_interface() -> None:
    """Each registered task builds a Task whose overriding methods keep the base signatures (names, order)."""
    from vitlab.train.config import EngineConfig
    from vitlab.train.tasks import TASKS
    from vitlab.train.tasks.base import Task
    from vitlab.train.tasks.image import ImageTask
    from vitlab.train.tasks.image_stream import StreamImageTask
    from vitlab.train.tasks.seq2seq import Seq2SeqTask

    for name, entry in TASKS.items():
        assert issubclass(entry.config, EngineConfig), name
        assert isinstance(entry.build(entry.config()), Task), name
    for cls in (ImageTask, StreamImageTask, Seq2SeqTask):
        assert not inspect.isabstract(cls), cls
        for method, base in vars(Task).items():
            if callable(base) and not method.startswith("__") and method in vars(cls):
                want = list(inspect.signature(base).parameters)
                have = list(inspect.signature(getattr(cls, method)).parameters)
                assert have == want, f"{cls.__name__}.{method}{have} differs from Task.{method}{want}"


def _named_paths(text: str) -> set[str]:
    """Repository paths (src/, tests/, docs/, benchmarks/, tools/, recipes, .ci/) a document names in backticks
    or links."""
    names = set(re.findall(r"`((?:src|tests|docs|benchmarks|tools|\.ci)/[\w./-]+)`", text))
    names |= set(re.findall(r"\]\(((?:\.\./)?[\w./-]+\.(?:md|png|py|yaml|json|csv))\)", text))
    return names


def _named_modules(text: str) -> set[str]:
    return set(re.findall(r"`(vitlab(?:\.\w+)+)", text))


def _module_exists(dotted: str) -> bool:
    """Whether ``vitlab.a.b`` is a module, or an attribute of the deepest importable module on its path."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        target = module
        for attr in parts[cut:]:
            if not hasattr(target, attr):
                return False
            target = getattr(target, attr)
        return True
    return False


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_only_paths_and_modules_that_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    missing = []
    for name in sorted(_named_paths(text)):
        base = doc.parent if not name.startswith(("src/", "tests/", "docs/", "benchmarks/", "tools/", ".ci/")) else ROOT
        if not (base / name).exists() and not (ROOT / name).exists():
            missing.append(name)
    missing += [name for name in sorted(_named_modules(text)) if not _module_exists(name)]
    assert missing == [], f"{doc.name} names what does not exist"


def test_docs_readme_points_to_nothing_outside_the_repository() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert not re.search(r"\]\(\.\./|`\.\./", text)
