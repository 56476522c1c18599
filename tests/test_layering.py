"""Imports point one way: the data readers never import the core (wiring, generation, conversion, training)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "src" / "modelring"


def relative_imports(path: Path) -> set[str]:
    """First package component of every relative import that leaves the file's own subpackage."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level >= 2:
            out.add((node.module or "").split(".")[0])
    return out


SHARED = {"keys", "atomic"}  # small modules that import nothing of the package


def test_data_imports_only_the_shared_helpers():
    used = set().union(*(relative_imports(p) for p in (PACKAGE / "data").glob("*.py")))
    assert used <= SHARED, f"data/ imports {sorted(used - SHARED)} from the core"


def test_shared_helpers_import_nothing_of_the_package():
    for name in SHARED:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level >= 1], name
