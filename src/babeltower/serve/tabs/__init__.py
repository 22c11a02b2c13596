"""One module per head's tab of the web demo; a task has a tab when ``tabs.<task name>`` exists.

A tab module defines module-level names only (like the task modules it mirrors)::

    NAME = "t2i"                 # the task name (babeltower.tasks.TASKS key) and the --flag
    ALIASES = ()                 # optional: more spellings of the --flag (contrastive: --retrieval)
    TITLE = "Text to image"      # the tab's label
    DEMO_DIRS = ("t2i",)         # main-job run folders tried for the default: runs/demo/<dir>/hub
    HELP = "..."                 # help of the --NAME PATH option
    MAKE_TARGET = "make demo-t2i"  # how to produce the default model (shown when it is missing)
    def load(path, device) -> object  # the inference model from a hub folder (or a checkpoint)
    def describe(model) -> str   # one line about the loaded model, shown on the tab
    def panel(model, limits) -> str   # the form's inputs (HTML); the app adds the button and result area
    def run(model, form, progress, limits) -> dict   # {"html": fragment, "data": JSON}; UserError for bad input
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional

#: Display order of the tabs this package knows; other tabs follow in registry order.
DEFAULT_ORDER = ("contrastive", "t2i", "asr", "ocr", "vqa", "distill")
_REQUIRED = ("NAME", "TITLE", "DEMO_DIRS", "HELP", "load", "describe", "panel", "run")


def _registry_names() -> Optional[list[str]]:
    """Task names from ``babeltower.tasks.TASKS``, or None while there is no registry."""
    try:
        from babeltower.tasks import TASKS
    except ImportError:
        return None
    return list(TASKS)


def _import_tab(name: str) -> Optional[ModuleType]:
    module_name = f"{__name__}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None  # this task has no tab
        raise
    missing = [attr for attr in _REQUIRED if not hasattr(module, attr)]
    if missing:
        raise AttributeError(f"{module.__file__}: a tab module must define {missing} (see babeltower.serve.tabs)")
    return module


def discover_tabs(names: Optional[list[str]] = None) -> dict[str, ModuleType]:
    """Tab modules in display order: one per task of the registry that has a tab module.

    Args:
        names: Task names to look for; None: ``babeltower.tasks.TASKS``, or every module
            in this package when the registry is absent. Shown in :data:`DEFAULT_ORDER`,
            then in the given order.
    """
    if names is None:
        names = _registry_names()
    if names is None:
        names = sorted(info.name for info in pkgutil.iter_modules([str(Path(__file__).parent)]))
    rank = {name: i for i, name in enumerate(DEFAULT_ORDER)}
    names = sorted(names, key=lambda n: (rank.get(n, len(rank)), list(names).index(n)))
    tabs: dict[str, ModuleType] = {}
    for name in names:
        module = _import_tab(name)
        if module is not None and module.NAME not in tabs:
            tabs[module.NAME] = module
    return tabs


def task_loader(name: str, path: str | Path) -> Callable[[], object]:
    """``babeltower.tasks.TASKS[name].load(path)`` as a thunk: the one loader of a head's
    hub folders and checkpoints. Raises LookupError when no such task is registered."""
    try:
        from babeltower.tasks import TASKS
    except ImportError:
        TASKS = {}
    task = TASKS.get(name)
    if task is None or not hasattr(task, "load"):
        raise LookupError(f"no task {name!r} with a load(path) function in babeltower.tasks.TASKS ({sorted(TASKS)})")
    return lambda: task.load(str(path))
