"""Tasks: model factory, data, loss, target accuracy and budget, as data."""

from tasks.catalog import TASKS, get_task
from tasks.errors import DataError, DataMissing, TaskError
from tasks.task import Task

__all__ = ["TASKS", "DataError", "DataMissing", "Task", "TaskError", "get_task"]
