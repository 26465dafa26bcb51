"""The layers of inpaint hold (DESIGN.md section 2): import-linter's contracts in pyproject.toml pass, no
inpaint module takes part in an import cycle (counting imports inside functions too), the low-level modules
load nothing above them, and every name that moved to a lower module is still importable from where it was."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from conftest import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "inpaint"


# ------------------------------------------------------------------------------------------- import graph
def _modules() -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is_package)}`` of every module under inpaint/."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _imported(node: ast.AST, package: str) -> list[str]:
    """The dotted names an import statement names (``from a import b`` gives ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolve against the importing module's package
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return []


def import_graph() -> dict[str, set[str]]:
    """``{module: inpaint modules it imports}``, from every import statement in its source (function bodies
    included); a name is resolved to the longest module it names (``from inpaint.x import f`` -> inpaint.x)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for imported in _imported(node, package):
                if imported == "inpaint" or not imported.startswith("inpaint."):
                    continue
                target = resolve(imported)
                if target is not None and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _under(names: set[str], package: str) -> set[str]:
    return {n for n in names if n == package or n.startswith(package + ".")}


# ------------------------------------------------------------------------------------------- tests
def test_import_linter_contracts_are_kept():
    """``lint-imports`` (as ``make lint`` runs it) finds every contract in pyproject.toml kept."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    assert lint_imports.is_file(), "import-linter is not installed: pip install -e '.[dev]'"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([str(lint_imports), "--no-cache", "--no-logo"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=HANG_GUARD_S)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "BROKEN" not in report and "0 broken" in report, report


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_inpaint_modules():
    graph = import_graph()
    assert {"inpaint.cli", "inpaint.run", "inpaint.checkpoints", "inpaint.errors", "inpaint.nets.vgg"} <= set(graph)
    assert import_cycles(graph) == []


def test_former_upward_imports_are_gone():
    """The couplings the layering review found (issue 18, item 5) stay removed, lazy imports included."""
    graph = import_graph()
    # cli -> checkpoints -> run -> cli
    assert not _under(reachable(graph, "inpaint.cli"), "inpaint.run")
    assert not _under(reachable(graph, "inpaint.checkpoints"), "inpaint.run")
    # checkpoints <-> models: the class checks sit above the models they check (and read only their declaration);
    # no model reaches them
    for model in (m for m in graph if m.startswith("inpaint.models")):
        assert "inpaint.checkpoints" not in reachable(graph, model), model
    models = {m for m in graph if m.startswith("inpaint.models.")}
    assert {m: sorted(graph[m] & {"inpaint.checkpoints"}) for m in models if "inpaint.checkpoints" in graph[m]} == {}
    # models.base -> loggers -> sweeps (the Hydra sweep callback)
    assert "inpaint.sweeps" not in reachable(graph, "inpaint.models.base")
    # nets.vgg -> weights -> data
    assert not _under(reachable(graph, "inpaint.weights"), "inpaint.data")
    for net in (m for m in graph if m.startswith("inpaint.nets.")):
        up = reachable(graph, net)
        assert not (_under(up, "inpaint.models") | _under(up, "inpaint.data") | {"inpaint.checkpoints"} & up), net


def test_errors_module_imports_nothing_but_the_standard_library():
    path = PACKAGE / "errors.py"
    names = {n.split(".")[0] for node in ast.walk(ast.parse(path.read_text())) for n in _imported(node, "inpaint")}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names


def test_low_level_modules_load_nothing_above_them():
    """In fresh interpreters: the errors load no other module of ours and no torch; the checkpoint reader,
    the run-level checkpoint checks and the VGG net load no model, run, data or Lightning module."""
    prefixes = ("inpaint", "torch", "lightning")
    errors_only = subprocess.run(
        [sys.executable, "-c", f"import sys, inpaint.errors; print(sorted(m for m in sys.modules "
                               f"if m.split('.')[0] in {prefixes!r}))"],
        cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    assert errors_only.returncode == 0, errors_only.stderr
    assert errors_only.stdout.strip() == str(["inpaint", "inpaint.errors"])

    script = """
import sys
import inpaint.checkpoint_io, inpaint.checkpoints, inpaint.config_dir, inpaint.download, inpaint.nets.vgg
import inpaint.overrides, inpaint.resume
above = ("inpaint.models", "inpaint.run", "inpaint.cli", "inpaint.data", "inpaint.sweeps", "inpaint.loggers",
         "inpaint.callbacks", "inpaint.report", "lightning", "pytorch_lightning", "hydra")
print(sorted(m for m in sys.modules if any(m == a or m.startswith(a + ".") for a in above)))
"""
    low = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=HANG_GUARD_S, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert low.returncode == 0, low.stderr
    assert low.stdout.strip() == "[]", low.stdout


def test_moved_names_are_still_importable_from_their_old_modules():
    import inpaint.checkpoint_io as checkpoint_io
    import inpaint.checkpoints as checkpoints
    import inpaint.cli as cli
    import inpaint.config_dir as config_dir
    import inpaint.data.download as data_download
    import inpaint.data.io as data_io
    import inpaint.download as download
    import inpaint.errors as errors
    import inpaint.models.base as base
    import inpaint.overrides as overrides
    import inpaint.resume as resume
    import inpaint.run as run
    import inpaint.sweeps as sweeps
    import inpaint.weights as weights

    for name in ("CheckpointMismatchError", "NotACheckpointError", "UnsafeCheckpointError"):
        assert getattr(checkpoints, name) is getattr(errors, name)
    assert checkpoints.read_checkpoint is checkpoint_io.read_checkpoint
    assert base.CHECKPOINT_CLASS_KEY == checkpoints.CHECKPOINT_CLASS_KEY == checkpoint_io.CHECKPOINT_CLASS_KEY
    assert base.class_path is checkpoints.class_path is checkpoint_io.class_path
    assert data_io.ImageReadError is errors.ImageReadError
    assert data_download.ChecksumError is download.ChecksumError is errors.ChecksumError
    for name in ("download_url", "check_md5", "md5sum", "file_digest"):
        assert getattr(data_download, name) is getattr(download, name)
    assert weights.WeightsUnavailableError is errors.WeightsUnavailableError
    assert weights.WeightsChecksumError is errors.WeightsChecksumError
    assert run.CONF_DIR is cli.CONF_DIR is config_dir.CONF_DIR
    assert (config_dir.CONF_DIR / "train.yaml").is_file()
    assert run.resume_arguments is resume.resume_arguments
    assert run.latest_checkpoint is resume.latest_checkpoint
    assert sweeps.parse_overrides is overrides.parse_overrides
    # the user errors that the entry points report as one message include ours, from their one module
    assert {errors.ImageReadError, errors.CheckpointMismatchError} <= set(cli.USER_ERRORS)
    assert issubclass(errors.UnsafeCheckpointError, cli.USER_ERRORS)
    assert issubclass(errors.WeightsUnavailableError, cli.USER_ERRORS)
    assert issubclass(errors.ChecksumError, cli.USER_ERRORS)
