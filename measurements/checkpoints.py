"""Checkpoints along one backprop-trained trajectory, where gradient quality is measured.

For a task and seed the trajectory is trained once with backprop at the task's rate and budget;
the parameters at the start, the middle and the end, and the full-data gradient at each (the
whole training set, or its first `FULL_DATA` examples), are kept in the results folder
(`checkpoints/`), so every estimator's quality cell is measured at the same points and a resumed
or distributed sweep reuses them. Training is seeded, so a recomputed trajectory is the same.

Beside G each checkpoint keeps the spread of the per-example gradients about it,
mean_i ||g_i - G||^2 over the same N examples (per layer and `total`), from which the exact
error of a backprop mini-batch follows (`Checkpoint.minibatch_mse`): the work-normalised MSE's
yardstick. A file written before the spread was kept gets it computed and is saved again.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from estimators import make_estimator, trainable_parameters
from measurements.gradient_stats import layer_sums
from measurements.train import Run, train
from tasks import Task
from tasks.data import Splits

FULL_DATA = 8192
PER_EXAMPLE_ELEMENTS = 2**24  # per-example gradient entries held at once (64 MiB in float32)


@dataclass(frozen=True)
class Checkpoint:
    """Parameters at one step of the trajectory, the full-data gradient G there, and the spread
    mean_i ||g_i - G||^2 of the per-example gradients over the N examples G averages."""

    params: dict[str, Tensor]
    full_grad: dict[str, Tensor]
    spread: dict[str, float]  # per layer and 'total'
    examples: int  # N

    def minibatch_mse(self, batch: int) -> dict[str, float]:
        """E||g_B - G||^2 of a backprop mini-batch of `batch` examples drawn without replacement
        from the N: (N - B) / (B (N - 1)) mean_i ||g_i - G||^2 (the variance of a sample mean
        without replacement, Cochran, Sampling Techniques, 3rd ed., 1977, Theorem 2.2)."""
        n = self.examples
        return {k: (n - batch) / (batch * (n - 1)) * v for k, v in self.spread.items()}


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


def gradient_spread(
    model: nn.Module, task: Task, data: Splits, full: dict[str, Tensor]
) -> dict[str, float]:
    """mean_i ||g_i - G||^2 per layer and 'total' over the examples `full_gradient` averages, g_i
    the gradient of example i's loss (`torch.func.vmap` over `grad`, in chunks of at most
    `PER_EXAMPLE_ELEMENTS` gradient entries), accumulated in float64."""
    params = {name: p.detach() for name, p in trainable_parameters(model).items()}

    def loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return task.loss(functional_call(model, p, (x[None],)), y[None]).sum()

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    n = min(len(data.x_train), FULL_DATA)
    chunk = max(1, PER_EXAMPLE_ELEMENTS // sum(p.numel() for p in params.values()))
    total: dict[str, Tensor] = {}
    for start in range(0, n, chunk):
        g = per_example(
            params, data.x_train[start : start + chunk], data.y_train[start : start + chunk]
        )
        dev = {k: (v - full[k]).pow(2).flatten(1).sum(1).double().sum() for k, v in g.items()}
        total = {k: total.get(k, 0) + v for k, v in layer_sums(dev).items()}
    return {k: v.item() / n for k, v in total.items()}


def load_params(model: nn.Module, params: dict[str, Tensor]) -> nn.Module:
    """Copy `params` into the model's trainable parameters; returns the model."""
    with torch.no_grad():
        for name, p in trainable_parameters(model).items():
            p.copy_(params[name])
    return model


def checkpoint_steps(steps: int) -> tuple[int, ...]:
    """Initialisation, mid training and end."""
    return tuple(sorted({0, steps // 2, steps}))


def _path(task: Task, seed: int, folder: Path) -> Path:
    return folder / "checkpoints" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', task.name)}-seed{seed}.pt"


def _checkpoint(
    model: nn.Module, task: Task, data: Splits, params: dict[str, Tensor], full: dict[str, Tensor]
) -> Checkpoint:
    """A checkpoint with its spread about G computed at `params`."""
    spread = gradient_spread(load_params(model, params), task, data, full)
    return Checkpoint(params, full, spread, min(len(data.x_train), FULL_DATA))


def trajectory(
    task: Task, seed: int, steps: int, data: Splits, device: torch.device, folder: Path
) -> dict[int, Checkpoint]:
    """The checkpoints by step, loaded from `folder` or trained and saved there; a file without
    the spread about G (written before it was kept) gets it computed and is saved again."""
    path = _path(task, seed, folder)
    if path.exists():
        stored = torch.load(path, map_location=device)
        if all("spread" in c for c in stored.values()):
            return {step: Checkpoint(**c) for step, c in stored.items()}
        model = task.model().to(device)
        points = {
            step: _checkpoint(model, task, data, c["params"], c["full_grad"])
            for step, c in stored.items()
        }
    else:
        run = Run(task, make_estimator("backprop"), seed, task.lr, device, steps)
        snapshots = train(run, data, snapshot_steps=checkpoint_steps(steps)).snapshots
        model = task.model().to(device)
        points = {
            step: _checkpoint(
                model, task, data, params, full_gradient(load_params(model, params), task, data)
            )
            for step, params in snapshots.items()
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own: workers writing the same checkpoint never race (the last rename wins)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    torch.save({step: asdict(c) for step, c in points.items()}, tmp)
    tmp.replace(path)
    return points
