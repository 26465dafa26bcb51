"""inpaint.nets holds plain nn.Modules: no module of it imports the framework's Lightning side
(inpaint.models, inpaint.checkpoints, lightning), eagerly or lazily, and the ISNet modules import one another
one way only (no cycle, no module ``__getattr__`` re-export)."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S

import inpaint.nets

NETS_DIR = Path(inpaint.nets.__file__).parent
NETS_MODULES = sorted(f"inpaint.nets.{m.name}" for m in pkgutil.iter_modules([str(NETS_DIR)]))
BLOCKED = ("inpaint.models", "inpaint.checkpoints", "lightning", "pytorch_lightning")


def is_blocked(name: str) -> bool:
    return any(name == b or name.startswith(b + ".") for b in BLOCKED)


def imported_names(module: str) -> set[str]:
    """Every module named by an import statement anywhere in ``module``'s source (function bodies included),
    with ``from pkg import sub`` counted as ``pkg.sub`` too."""
    path = NETS_DIR / f"{module.rpartition('.')[2]}.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against inpaint.nets
                base = ".".join(["inpaint.nets", *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_nets_modules_are_found():
    assert {"inpaint.nets.isnet", "inpaint.nets.isnet_blocks", "inpaint.nets.isnet_variants",
            "inpaint.nets.vgg", "inpaint.nets.lif", "inpaint.nets.scnn"} <= set(NETS_MODULES)


def test_nets_source_names_no_lightning_side_module():
    found = {m: sorted(n for n in imported_names(m) if is_blocked(n)) for m in NETS_MODULES}
    assert {m: names for m, names in found.items() if names} == {}


@pytest.mark.slow
def test_nets_import_with_lightning_side_blocked():
    """In a fresh interpreter where importing any blocked module fails, every nets module imports (each in
    both orders relative to the others) and none of the blocked modules got loaded."""
    script = f"""
import importlib, importlib.abc, sys
BLOCKED = {BLOCKED!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"blocked import of {{name}}")
        return None
sys.meta_path.insert(0, Block())
for name in {NETS_MODULES!r}:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
assert not loaded, loaded
print("ok")
"""
    for order in (NETS_MODULES, NETS_MODULES[::-1]):
        code = script.replace(repr(NETS_MODULES), repr(order), 1)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_isnet_modules_import_one_way():
    """The import graph among the ISNet nets modules is acyclic and none of them has a module __getattr__."""
    isnet = [m for m in NETS_MODULES if m.rpartition(".")[2].startswith("isnet")]
    graph = {m: {n for n in imported_names(m) if n in isnet and n != m} for m in isnet}
    assert graph["inpaint.nets.isnet_blocks"] == set()
    assert "inpaint.nets.isnet" not in graph["inpaint.nets.isnet_variants"]
    # topological sort: repeatedly take the modules whose imports are all taken
    done: list[str] = []
    while len(done) < len(graph):
        ready = [m for m in graph if m not in done and graph[m] <= set(done)]
        assert ready, f"import cycle among {sorted(set(graph) - set(done))}: {graph}"
        done += ready
    for m in isnet:
        tree = ast.parse((NETS_DIR / f"{m.rpartition('.')[2]}.py").read_text())
        top_level = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert "__getattr__" not in top_level, m
