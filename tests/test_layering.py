"""Imports point one way. Floors, from the bottom: the leaves (pure helpers and the integer wiring, the size grammar,
the spec), the core (layouts, generation, the ring bank, planning, the verbs, counting, files), then models and
data, methods and tasks, the loop, sweeps, the command line. Every import is read, lazy ones inside functions too."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "src" / "modelring"

LEAVES = {"keys", "atomic", "vocab", "sizes", "wiring", "spec"}
CORE = LEAVES | {"kernels", "elementwise", "blockwise", "generate", "compat", "guard", "bank", "plan", "convert",
                 "count", "io", "diagnose", "prune", "reuse", "quantize", "adapters"}
ABOVE_CORE = {"loop", "tasks", "data", "sweep", "cli", "methods", "runfiles", "distributed", "optim"}
TORCH_FREE = {"keys", "atomic", "vocab", "sizes", "compat", "config", "config_keys"}  # importable before torch


def module_name(path: Path) -> str:
    """``src/modelring/tasks/pose/task.py`` -> ``tasks.pose.task``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level(tree: ast.Module):
    """The nodes run when the module is imported: everything outside function bodies."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield node
            stack.extend(ast.iter_child_nodes(node))


def imported(path: Path, *, at_import: bool = False) -> set[str]:
    """Every module ``path`` imports (``at_import``: only those imported when the module itself is imported, not
    lazily inside functions), package modules as their dotted name inside modelring (``bank``, ``tasks.base``),
    other modules as ``<top-level name>`` prefixed with ``!`` (``!torch``)."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    tree = ast.parse(path.read_text())
    for node in (module_level(tree) if at_import else ast.walk(tree)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = [*base, *(node.module.split(".") if node.module else [])]
            if node.module is None:  # from . import wiring as wr
                out.update(".".join([*target, a.name]) for a in node.names)
            else:
                out.add(".".join(target))
        elif isinstance(node, ast.ImportFrom):
            name = node.module
            out.add(name[len("modelring."):] if name.startswith("modelring.") else "!" + name.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                out.add(name[len("modelring."):] if name.startswith("modelring.") else "!" + name.split(".")[0])
    return out


FILES = sorted(PACKAGE.rglob("*.py"))


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", [p for p in FILES if top(module_name(p)) in LEAVES], ids=lambda p: p.stem)
def test_leaves_import_only_leaves(path):
    used = {top(m) for m in imported(path) if not m.startswith("!")}
    assert used <= LEAVES, f"{path.name} imports {sorted(used - LEAVES)}"


@pytest.mark.parametrize("path", [p for p in FILES if top(module_name(p)) in CORE], ids=lambda p: p.stem)
def test_the_core_never_imports_what_trains_or_runs(path):
    used = {top(m) for m in imported(path) if not m.startswith("!")}
    assert not used & ABOVE_CORE, f"{path.name} imports {sorted(used & ABOVE_CORE)}"


@pytest.mark.parametrize("name", sorted(TORCH_FREE))
def test_torch_free_modules_import_no_torch(name):
    assert not {m for m in imported(PACKAGE / f"{name}.py", at_import=True) if m in ("!torch", "!numpy")}


def test_at_import_leaves_out_lazy_imports():
    assert "!torch" in imported(PACKAGE / "config.py") and "!torch" not in imported(PACKAGE / "config.py",
                                                                                      at_import=True)


def test_data_imports_only_the_shared_helpers():
    used = {top(m) for p in (PACKAGE / "data").glob("*.py") for m in imported(p) if not m.startswith("!")}
    assert used <= {"keys", "atomic", "data"}, f"data/ imports {sorted(used - {'keys', 'atomic', 'data'})}"


def test_the_package_never_imports_experiments_or_bench():
    for path in FILES:
        used = {m for m in imported(path) if m.startswith("!")}
        assert not used & {"!experiments", "!bench", "!results_table", "!stats", "!validation"}, path


def test_the_reader_resolves_relative_imports():
    assert {"bank", "spec", "wiring", "!torch"} <= imported(PACKAGE / "diagnose.py")
    assert "tasks.base" in imported(PACKAGE / "tasks" / "classification.py")
    assert "data" in imported(PACKAGE / "tasks" / "classification.py")
