"""What every cell of a sweep shares: device, data, results folder and budget override."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from measurements.budget import Budget, Seconds, Steps, budget
from tasks import Task
from tasks.data import DataSource, Splits


@dataclass
class Context:
    """Shared by the cells of one sweep; data sets are loaded once and kept on the device."""

    device: torch.device
    source: DataSource
    folder: Path
    steps: Steps = None  # overrides the step budget of every task (or of those named) when set
    draws: int = 64
    seconds: Seconds = None  # wall-clock cap on each training run (or those named) when set
    on_step: Callable[[int], None] | None = None
    _data: dict[str, Splits] = field(default_factory=dict)

    def data(self, task: Task) -> Splits:
        """The task's data set on the sweep's device."""
        if task.dataset not in self._data:
            self._data[task.dataset] = task.load(self.source).to(self.device)
        return self._data[task.dataset]

    def budget(self, task: Task) -> Budget:
        """The step budget and wall-clock cap in force for `task`."""
        return budget(task, self.steps, self.seconds)
