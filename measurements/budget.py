"""The budget rule, written once: how many steps a training run takes, and its wall-clock cap.

A run takes the sweep's steps when given (`--steps`: one count for every task; a preset may give
counts by task name), else its task's `steps`. Its wall-clock cap is the smaller of the sweep's
`--seconds` (one cap for every task; a preset may give caps by task name) and the task's own
`seconds`, whichever are set (None: no cap). Training stops at
whichever of the two it meets first (`measurements.train.train`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tasks import Task


@dataclass(frozen=True)
class Budget:
    """Steps and wall-clock cap in force for one task."""

    steps: int
    seconds: float | None


Steps = int | Mapping[str, int] | None  # every task's, per task name, or none
Seconds = float | Mapping[str, float] | None  # every task's cap, per task name, or none


def budget(task: Task, steps: Steps = None, seconds: Seconds = None) -> Budget:
    """The budget for `task` under the overrides `steps` and `seconds` (None: not overridden;
    a mapping that does not name the task leaves its own)."""
    cap = seconds.get(task.name) if isinstance(seconds, Mapping) else seconds
    caps = [c for c in (cap, task.seconds) if c is not None]
    given = steps.get(task.name) if isinstance(steps, Mapping) else steps
    return Budget(given or task.steps, min(caps) if caps else None)
