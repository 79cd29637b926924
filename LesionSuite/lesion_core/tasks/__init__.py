"""Lesion tasks behind one contract, and their registry.

A task (WMH, CMB, ICH, and any later one) is one :class:`Task` object registered here;
the command line, the model lists and the bundle checks ask the registry, never a task
package by name:

>>> from lesion_core.tasks import get_task
>>> get_task("wmh").bundle_kinds
('wmh', 'wmh_t1')

Modules: :mod:`.contract` (the :class:`Task` base class and :class:`Option`),
:mod:`.registry`, :mod:`.models` (:class:`ModelCard`, :class:`TaskModel` and the one
bundle loader :func:`load_model`), :mod:`.reports` (:class:`EvaluationReport`),
:mod:`.settings` (:class:`TrainSettings`) and :mod:`.outputs` (:class:`OutputFiles` and
the checks of the torch-free output readers). Nothing here imports torch: the task modules
import their heavy parts when a verb runs, and loading or saving a model imports it.
"""

from __future__ import annotations

from .contract import VERBS, Option, Task, option
from .models import ModelCard, TaskModel, load_model, next_version
from .outputs import FileCheck, OutputFiles, is_number
from .registry import (BUILTIN_TASKS, all_tasks, bundle_kinds, get_task, register_task,
                       task_of_kind)
from .reports import EvaluationReport
from .settings import TrainSettings

__all__ = ["BUILTIN_TASKS", "EvaluationReport", "FileCheck", "ModelCard", "Option",
           "OutputFiles", "Task", "TaskModel", "TrainSettings", "VERBS", "all_tasks",
           "bundle_kinds", "get_task", "is_number", "load_model", "next_version", "option",
           "register_task", "task_of_kind"]
