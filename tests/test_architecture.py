"""The package's shape, as docs/architecture.md states it: dependencies between the subpackages
run one way (read from every import statement, the lazy ones inside functions included), loggers
are named after their modules, no private name is imported across modules, and no module grows
past 400 lines."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ba_net"
TOP = {"cli", "config", "errors", "files", "runtime"}  # the top-level modules
# what each area may import besides itself and the top-level modules ("ba_net" = the package's API)
ALLOWED = {
    "top": {"ba_net", "data", "models"},  # config checks model and preset names against the registries
    # (lazily); cli reads the package's __version__
    "attention": set(),
    "models": {"attention"},
    "data": {"models"},  # a model's input size against the preset's image size
    "accel": {"attention", "models", "data"},
    "runs": {"models", "data"},  # the run reader builds a run's model with its data set's classes
    "train": {"ba_net", "attention", "models", "data", "accel", "runs"},
    "report": {"ba_net", "attention", "models", "data", "accel", "runs"},
    "deploy": {"ba_net", "models", "data", "accel", "runs"},
    "bench": {"ba_net", "attention", "models", "data", "accel", "runs", "train", "report", "deploy"},
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text(encoding="utf-8"))


def _area(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "ba_net"
    return "top" if parts[1] in TOP else parts[1]


def _imports(tree):
    """(imported module, [names]) of every import of ba_net in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ba_net":
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ba_net":
                    yield alias.name, []


def test_dependencies_run_one_way():
    wrong = []
    for name, _, tree in _modules():
        area = _area(name)
        if area == "ba_net":
            continue  # the package's __init__ gathers the public API
        for module, names in _imports(tree):
            targets = {_area(module)}
            if module == "ba_net":  # `from ba_net import data as D`: the subpackage named
                targets = {_area(f"ba_net.{n}") if (PACKAGE / n).is_dir() or f"{n}" in TOP else "ba_net" for n in names}
            for target in targets - {area, "top"}:
                if target not in ALLOWED[area]:
                    wrong.append(f"{name} imports {module} ({area} -> {target})")
    assert not wrong, "\n".join(wrong)


def test_training_never_reaches_reports_deploy_or_the_benchmark():
    """The same rule, said as the issue says it, on the modules training runs."""
    for name, _, tree in _modules():
        if _area(name) == "train":
            for module, _ in _imports(tree):
                assert _area(module) not in {"report", "deploy", "bench"}, (name, module)


def test_every_logger_is_named_after_its_module():
    for name, path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "getLogger" and node.args:
                arg = node.args[0]
                assert isinstance(arg, ast.Name) and arg.id == "__name__" or name == "ba_net.runtime", \
                    f"{path}: getLogger({ast.unparse(arg)}); use getLogger(__name__)"


def test_no_private_name_is_imported_across_modules():
    wrong = [f"{name}: from {module} import {n}" for name, _, tree in _modules() for module, names in _imports(tree)
             for n in names if n.startswith("_") and not n.startswith("__") and module != name]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("limit", [400])
def test_no_module_over_400_lines(limit):
    long = {name: n for name, path, _ in _modules() if (n := len(path.read_text().splitlines())) > limit}
    assert not long, long


def test_about_a_dozen_entries_at_the_top():
    """Five top-level modules (cli, config, errors, files, runtime), nine subpackages, __init__."""
    entries = [p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"]
    assert len(entries) <= 15, sorted(entries)
