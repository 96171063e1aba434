"""The library's layout: packages by concept, imports only downward, no import circle.

Reads every module's imports (top-level and inside functions) with :mod:`ast`, so nothing is
imported or run. The order is the one the README draws.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "fisher_core"
ORDER = ["utils", "data", "fisher", "models", "training", "embeddings", "explore", "metrics",
         "plots", "workspace", "cli"]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute fisher_core modules (or packages) that ``path`` imports from."""
    package = _module(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            target, names = None, []
            found.update(a.name for a in node.names if a.name.startswith("fisher_core"))
        else:
            continue
        if target and target.split(".")[0] == "fisher_core":
            # `from . import x` names a submodule when x is one
            subs = [f"{target}.{n}" for n in names if _exists(f"{target}.{n}")]
            found.update(subs or [target])
    return found


def _exists(module: str) -> bool:
    p = ROOT.parent / module.replace(".", "/")
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


MODULES = {_module(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def test_top_level_holds_only_packages():
    loose = sorted(p.name for p in ROOT.glob("*.py") if p.name != "__init__.py")
    assert loose == []
    packages = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())
    assert packages == sorted(ORDER)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.count(".") >= 1))
def test_imports_only_run_downward(module):
    rank = ORDER.index(module.split(".")[1])
    for target in MODULES[module]:
        parts = target.split(".")
        assert len(parts) > 1, f"{module} imports the top-level package"
        assert ORDER.index(parts[1]) <= rank, f"{module} imports upward from {target}"


def test_no_import_circle():
    """No module reaches itself through imports (a package counts as its __init__)."""
    graph = {m: {t for t in ts if t in MODULES and t != m} for m, ts in MODULES.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            # a module importing its own package's __init__ is the circle we care about too
            if state.get(t) == 1:
                raise AssertionError(" -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
