"""The registry of lesion tasks: which tasks there are, found by name or bundle kind.

Each task package (``lesion_core.wmh``, ``.cmb``, ``.ich``) has a ``task`` module whose
``TASK`` is an instance of :class:`~.contract.Task`; :data:`BUILTIN_TASKS` lists those
modules (imported on first use, by name: the registry depends on no task), and
:func:`register_task` adds another task at run time. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import LesionSuiteError

#: A registered task: a :class:`~.contract.Task`. The registry imports no task module, not
#: even for types: the task modules import this package, so it cannot import them.
Task = Any

#: Modules whose ``TASK`` is registered on first use, in command-line order.
BUILTIN_TASKS = ("lesion_core.wmh.task", "lesion_core.cmb.task", "lesion_core.ich.task")

_registry: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry (a task of the same name is replaced)."""
    if not task.name or not task.bundle_kinds:
        raise ValueError("a task needs a name and at least one bundle kind")
    taken = {kind: other.name for other in _registry.values() if other.name != task.name
             for kind in other.bundle_kinds}
    clash = [kind for kind in task.bundle_kinds if kind in taken]
    if clash:
        raise ValueError(f"bundle kind {clash[0]!r} belongs to task {taken[clash[0]]!r}")
    _registry[task.name] = task
    return task


def _load_builtin() -> None:
    for module in BUILTIN_TASKS:
        task = importlib.import_module(module).TASK
        if task.name not in _registry:
            register_task(task)


def all_tasks() -> tuple[Task, ...]:
    """Every registered task (the built-in ones first)."""
    _load_builtin()
    return tuple(_registry.values())


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name is one clear error."""
    _load_builtin()
    if name not in _registry:
        raise LesionSuiteError(f"there is no task {name!r}",
                               f"choose one of {', '.join(_registry)}")
    return _registry[name]


def task_of_kind(kind: str) -> Task:
    """The task whose bundles have metadata ``task`` ``kind`` (``"wmh_t1"`` -> WMH)."""
    for task in all_tasks():
        if kind in task.bundle_kinds:
            return task
    raise LesionSuiteError(f"no task saves models of kind {kind!r}",
                           f"choose one of {', '.join(bundle_kinds())}")


def bundle_kinds() -> tuple[str, ...]:
    """Every bundle kind a registered task saves (the values ``metadata.json`` may hold
    under ``task``)."""
    return tuple(kind for task in all_tasks() for kind in task.bundle_kinds)
