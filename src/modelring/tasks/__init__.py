"""Tasks: what differs between classification, pose estimation, multi-task dense regression and language
modelling.

``TASKS`` maps ``task.name`` to a ``Task`` (``modelring.tasks.base``); ``modelring.loop`` trains any of them with
one loop. ``register_task`` adds one.
"""
from __future__ import annotations

from .base import Task
from .classification import ClassificationTask
from .lm import LMTask
from .multitask.task import MultitaskTask
from .pose.task import PoseTask

TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make ``task`` trainable as ``task.name: <task.name>``; returns it."""
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The registered task called ``name``, or a clear error naming the known ones."""
    if name not in TASKS:
        raise ValueError(f"task.name must be one of {', '.join(sorted(TASKS))}, got {name!r}")
    return TASKS[name]


for _task in (ClassificationTask(), PoseTask(), MultitaskTask(), LMTask()):
    register_task(_task)

__all__ = ["TASKS", "Task", "get_task", "register_task"]
