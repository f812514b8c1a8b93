"""The budget rule, written once: how many steps a training run takes, and its wall-clock cap.

A run takes the sweep's `--steps` when given, else its task's `steps`. Its wall-clock cap is the
smaller of the sweep's `--seconds` and the task's own `seconds`, whichever are set (None: no
cap). Training stops at whichever of the two it meets first (`measurements.train.train`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks import Task


@dataclass(frozen=True)
class Budget:
    """Steps and wall-clock cap in force for one task."""

    steps: int
    seconds: float | None


def budget(task: Task, steps: int | None = None, seconds: float | None = None) -> Budget:
    """The budget for `task` under the overrides `steps` and `seconds` (None: not overridden)."""
    caps = [c for c in (seconds, task.seconds) if c is not None]
    return Budget(steps or task.steps, min(caps) if caps else None)
