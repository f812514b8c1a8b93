"""Checkpoints along one backprop-trained trajectory, where gradient quality is measured.

For a task and seed the trajectory is trained once with backprop at the task's rate and budget;
the parameters at the start, the middle and the end, and the full-data gradient at each (the
whole training set, or its first `FULL_DATA` examples), are kept in the results folder
(`checkpoints/`), so every estimator's quality cell is measured at the same points and a resumed
or distributed sweep reuses them. Training is seeded, so a recomputed trajectory is the same.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from estimators import make_estimator, trainable_parameters
from measurements.train import Run, train
from tasks import Task
from tasks.data import Splits

FULL_DATA = 8192


@dataclass(frozen=True)
class Checkpoint:
    """Parameters at one step of the trajectory and the full-data gradient there."""

    params: dict[str, Tensor]
    full_grad: dict[str, Tensor]


def full_gradient(
    model: nn.Module, task: Task, data: Splits, chunk: int = 1024
) -> dict[str, Tensor]:
    """Gradient of the mean loss over (a prefix of) the training set, by backprop in chunks."""
    params = trainable_parameters(model)
    n = min(len(data.x_train), FULL_DATA)
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    for start in range(0, n, chunk):
        end = min(start + chunk, n)
        loss = task.loss(model(data.x_train[start:end]), data.y_train[start:end]).sum() / n
        grads = torch.autograd.grad(loss, list(params.values()))
        for acc, g in zip(total.values(), grads, strict=True):
            acc += g
    return total


def load_params(model: nn.Module, params: dict[str, Tensor]) -> nn.Module:
    """Copy `params` into the model's trainable parameters; returns the model."""
    with torch.no_grad():
        for name, p in trainable_parameters(model).items():
            p.copy_(params[name])
    return model


def checkpoint_steps(steps: int) -> tuple[int, ...]:
    """Initialisation, mid training and end."""
    return tuple(sorted({0, steps // 2, steps}))


def trajectory(
    task: Task, seed: int, steps: int, data: Splits, device: torch.device, folder: Path
) -> dict[int, Checkpoint]:
    """The checkpoints by step, loaded from `folder` or trained and saved there."""
    path = folder / "checkpoints" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', task.name)}-seed{seed}.pt"
    if path.exists():
        stored = torch.load(path, map_location=device)
        return {step: Checkpoint(**c) for step, c in stored.items()}
    run = Run(task, make_estimator("backprop"), seed, task.lr, device, steps)
    snapshots = train(run, data, snapshot_steps=checkpoint_steps(steps)).snapshots
    model = task.model().to(device)
    points = {
        step: Checkpoint(params, full_gradient(load_params(model, params), task, data))
        for step, params in snapshots.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({step: asdict(c) for step, c in points.items()}, tmp)
    tmp.replace(path)
    return points
