"""Tasks: model factory, data, loss, target accuracy and budget, as data."""

from tasks.catalog import TASKS, get_task
from tasks.errors import DataError, TaskError
from tasks.task import Task

__all__ = ["TASKS", "DataError", "Task", "TaskError", "get_task"]
