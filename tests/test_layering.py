"""The layering of ../shared/STYLE.md, checked on the imports of every module.

cli -> tasks -> train -> (models, datasets, eval); datasets -> modalities; eval -> (models,
modalities); models -> modalities. models/ knows no Lightning and no data I/O, datasets/
knows no model, eval/ runs without Lightning, and nothing imports cli.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "babeltower"

#: package -> imports it must not make (prefixes)
FORBIDDEN = {
    "models": ("lightning", "pytorch_lightning", "babeltower.datasets", "babeltower.train", "babeltower.eval",
               "babeltower.tasks", "babeltower.cli", "babeltower.serve"),
    "datasets": ("babeltower.models", "babeltower.train", "babeltower.eval", "babeltower.tasks", "babeltower.cli",
                 "babeltower.serve"),
    "modalities": ("lightning", "babeltower.models", "babeltower.datasets", "babeltower.train", "babeltower.eval",
                   "babeltower.tasks", "babeltower.cli", "babeltower.serve"),
    "eval": ("lightning", "pytorch_lightning", "babeltower.train", "babeltower.tasks", "babeltower.cli",
             "babeltower.serve"),
    "train": ("babeltower.tasks", "babeltower.cli", "babeltower.serve"),
    "tasks": ("babeltower.cli",),
    "serve": ("babeltower.cli",),
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _modules():
    for package in FORBIDDEN:
        for path in sorted((SRC / package).rglob("*.py")):
            yield package, path


@pytest.mark.parametrize("package,path", list(_modules()), ids=lambda v: str(v).split("babeltower/")[-1])
def test_module_respects_the_layering(package, path):
    bad = [name for name in _imports(path) for prefix in FORBIDDEN[package]
           if name == prefix or name.startswith(prefix + ".")]
    assert not bad, f"{path.relative_to(SRC)} imports {bad}, which {package}/ must not"


def test_nothing_imports_cli():
    root = SRC.parents[1]
    files = [p for folder in ("src", "scripts", "benchmarks") for p in (root / folder).rglob("*.py") if p.name != "cli.py"]
    importers = [str(p.relative_to(root)) for p in files if "babeltower.cli" in _imports(p)]
    assert files and importers == []


def test_tests_use_only_the_cli_entry_point():
    tests = Path(__file__).resolve().parent
    for path in tests.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "babeltower.cli":
                assert [a.name for a in node.names] == ["main"], f"{path.name} imports {[a.name for a in node.names]} from cli"


def test_cli_names_no_head():
    """cli.py parses and dispatches: heads come from the registry, not from cli.py."""
    from babeltower.tasks import TASKS

    tree = ast.parse((SRC / "cli.py").read_text(encoding="utf-8"))
    imported = {n for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
                for n in [node.module]}
    head_modules = {f"babeltower.{layer}.{name}" for layer in ("train", "models", "tasks", "eval") for name in TASKS}
    assert not imported & head_modules, imported & head_modules
