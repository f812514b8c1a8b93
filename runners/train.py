"""The training loop: any estimator, any task, a torch optimizer fed with the estimates.

Wall time counts training steps only (evaluation excluded). FLOPs are counted once per
estimator phase with `FlopCounterMode` on a probe estimate drawn from a copy of the random
state (estimates never change estimator state, so the probe leaves the run unchanged); each
step then adds its phase's count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from estimators import Batch, GradientEstimator, trainable_parameters
from runners.device import now
from runners.flops import count_flops
from tasks import Task
from tasks.data import Splits


def make_optimizer(name: str, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum 0.9."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}; valid: adam, sgd")


@dataclass(frozen=True)
class Run:
    """What one training run is: task, estimator, seed and learning rate on a device."""

    task: Task
    estimator: GradientEstimator
    seed: int
    lr: float
    device: torch.device
    steps: int | None = None  # overrides the task's step budget when set


def batches(n: int, size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Index batches of a fresh random permutation each epoch (the last partial one dropped)."""
    size = min(size, n)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - size + 1, size):
            yield order[start : start + size]


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 1024) -> float:
    """Fraction of examples whose arg-max logit is the target."""
    correct = sum(
        (model(x[i : i + chunk]).argmax(dim=1) == y[i : i + chunk]).sum().item()
        for i in range(0, len(x), chunk)
    )
    return correct / len(x)


def probe_flops(est: GradientEstimator, batch: Batch, generator: torch.Generator) -> int:
    """FLOPs of one estimate, drawn from a copy of `generator` so the run's noise is untouched."""
    probe = torch.Generator(device=generator.device)
    probe.set_state(generator.get_state())
    return count_flops(lambda: est.estimate(batch, probe))


def train(
    run: Run, data: Splits, on_step: Callable[[int], None] | None = None
) -> list[dict[str, Any]]:
    """Train from a seeded initialisation; one row per evaluation, as `train.csv` holds them.

    Rows carry status `ok`, the last one `completed` (budget spent) or `diverged` (the loss
    turned NaN/inf, after which training stops).
    """
    task, est, device = run.task, run.estimator, run.device
    torch.manual_seed(run.seed)
    model = task.model().to(device)
    est.bind(model, task.loss)
    params = trainable_parameters(model)
    optimizer = make_optimizer(task.optimizer, list(params.values()), run.lr)
    order = batches(len(data.x_train), task.batch_size, torch.Generator().manual_seed(run.seed))
    noise = torch.Generator(device=device).manual_seed(run.seed + 1)
    steps = run.steps or task.steps
    base = {
        "task": task.name,
        "estimator": est.name,
        "params": est.params_str,
        "seed": run.seed,
        "lr": run.lr,
    }
    phase_flops: dict[str, int] = {}
    seconds, flops, losses = 0.0, 0, []
    rows = [
        {
            **base,
            "step": 0,
            "seconds": 0.0,
            "flops": 0,
            "train_loss": math.nan,
            "val_acc": accuracy(model, data.x_val, data.y_val),
            "status": "ok",
        }
    ]
    for step in range(1, steps + 1):
        idx = next(order).to(device)
        batch = (data.x_train[idx], data.y_train[idx])
        phase = est.phase()
        if phase not in phase_flops:
            phase_flops[phase] = probe_flops(est, batch, noise)
        start = now(device)
        estimate = est.estimate(batch, noise)
        loss = estimate.loss.item()
        if not math.isfinite(loss):
            rows.append(
                {
                    **base,
                    "step": step,
                    "seconds": seconds,
                    "flops": flops,
                    "train_loss": loss,
                    "val_acc": math.nan,
                    "status": "diverged",
                }
            )
            return rows
        for name, p in params.items():
            p.grad = estimate.grads[name]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        est.update(estimate)
        seconds += now(device) - start
        flops += phase_flops[phase]
        losses.append(loss)
        out_of_time = task.seconds is not None and seconds >= task.seconds
        last = step == steps or out_of_time
        if step % task.eval_every == 0 or last:
            rows.append(
                {
                    **base,
                    "step": step,
                    "seconds": seconds,
                    "flops": flops,
                    "train_loss": sum(losses) / len(losses),
                    "val_acc": accuracy(model, data.x_val, data.y_val),
                    "status": "completed" if last else "ok",
                }
            )
            losses = []
        if on_step is not None:
            on_step(step)
        if out_of_time:
            break
    return rows
