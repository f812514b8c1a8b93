"""The training loop: any estimator, any task, a torch optimizer fed with the estimates.

Wall time counts training steps only (evaluation excluded). FLOPs are counted once per
estimator phase (`measurements.flops`: matmuls, convolutions and linear algebra) on a probe step
of a deep copy of the estimator: an estimate drawn from a copy of the random state and the
`update` it feeds (so refits and ridge solves count), leaving the run unchanged; each step then
adds its phase's count. The optimizer's own work is not counted.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Collection, Iterator
from dataclasses import astuple, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from estimators import Batch, Estimate, GradientEstimator, trainable_parameters
from measurements.budget import budget
from measurements.device import now
from measurements.flops import Work, count_work
from tasks import Task
from tasks.data import Splits


def make_optimizer(name: str, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam, SGD with momentum 0.9, or plain gradient descent (`gd`: SGD without momentum)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "gd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; valid: adam, sgd, gd")


@dataclass(frozen=True)
class Run:
    """What one training run is: task, estimator, seed and learning rate on a device."""

    task: Task
    estimator: GradientEstimator
    seed: int
    lr: float
    device: torch.device
    steps: int | None = None  # overrides the task's step budget when set
    seconds: float | None = None  # a wall-clock cap on training time, beside the task's own


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


@dataclass
class Learner:
    """A seeded model, its estimator (bound to it) and the optimizer fed with the estimates."""

    model: nn.Module
    estimator: GradientEstimator
    params: dict[str, nn.Parameter]
    optimizer: torch.optim.Optimizer

    @classmethod
    def create(
        cls, task: Task, estimator: GradientEstimator, seed: int, lr: float, device: torch.device
    ) -> Learner:
        torch.manual_seed(seed)
        model = task.model().to(device)
        estimator.bind(model, task.loss)
        params = trainable_parameters(model)
        return cls(
            model, estimator, params, make_optimizer(task.optimizer, list(params.values()), lr)
        )

    def step(self, batch: Batch, generator: torch.Generator) -> Estimate:
        """One optimisation step: estimate, hand the estimate to the optimizer, advance state."""
        estimate = self.estimator.estimate(batch, generator)
        for name, p in self.params.items():
            p.grad = estimate.grads[name]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.estimator.update(estimate)
        return estimate


def probe_work(est: GradientEstimator, batch: Batch, generator: torch.Generator) -> Work:
    """Work of one step of the estimator at its current state: an estimate drawn from a copy of
    `generator`, then, for a stateful estimator (one that overrides `update`), the update it
    feeds (refits, buffers) on a deep copy of the estimator; the run's estimator and noise are
    untouched (estimates never change estimator state)."""
    probe = torch.Generator(device=generator.device)
    probe.set_state(generator.get_state())
    if type(est).update is GradientEstimator.update:
        return count_work(lambda: est.estimate(batch, probe))
    shadow = copy.deepcopy(est)
    return count_work(lambda: shadow.update(shadow.estimate(batch, probe)))


def probe_flops(est: GradientEstimator, batch: Batch, generator: torch.Generator) -> int:
    """FLOPs of `probe_work`."""
    return probe_work(est, batch, generator).flops


@dataclass
class TrainResult:
    """Eval rows (`train.csv`), diagnostic rows (`diagnostics.csv`) and requested snapshots."""

    rows: list[dict[str, Any]]
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)


def train(
    run: Run,
    data: Splits,
    on_step: Callable[[int], None] | None = None,
    snapshot_steps: Collection[int] = (),
) -> TrainResult:
    """Train from a seeded initialisation; one row per evaluation, as `train.csv` holds them.

    Rows carry status `ok`, the last one `completed` (budget spent) or `diverged` (the loss
    turned NaN/inf, after which training stops). Each eval also logs the mean of every
    `Estimate.diagnostics` value since the previous eval. `snapshot_steps` asks for copies of
    the parameters after those steps (0: the initialisation).
    """
    task, est, device = run.task, run.estimator, run.device
    learner = Learner.create(task, est, run.seed, run.lr, device)
    model, params = learner.model, learner.params
    order = batches(len(data.x_train), task.batch_size, torch.Generator().manual_seed(run.seed))
    noise = torch.Generator(device=device).manual_seed(run.seed + 1)
    steps, limit = astuple(budget(task, run.steps, run.seconds))
    base = {"task": task.name, "estimator": est.name, "params": est.params_str,
            "seed": run.seed, "lr": run.lr}  # fmt: skip
    result = TrainResult(rows=[])
    phase_flops: dict[str, int] = {}
    seconds, flops, losses = 0.0, 0, []
    logged: dict[str, list[float]] = {}

    def record(step: int, loss: float, acc: float, status: str) -> None:
        result.rows.append({**base, "step": step, "seconds": seconds, "flops": flops,
                            "train_loss": loss, "val_acc": acc, "status": status})  # fmt: skip
        result.diagnostics.extend(
            {**base, "step": step, "name": name, "value": sum(v) / len(v)}
            for name, v in logged.items()
        )
        logged.clear()

    def snapshot(step: int) -> None:
        if step in snapshot_steps:
            result.snapshots[step] = {n: p.detach().clone() for n, p in params.items()}

    record(0, math.nan, accuracy(model, data.x_val, data.y_val), "ok")
    snapshot(0)
    for step in range(1, steps + 1):
        idx = next(order).to(device)
        batch = (data.x_train[idx], data.y_train[idx])
        phase = est.phase()
        if phase not in phase_flops:
            phase_flops[phase] = probe_flops(est, batch, noise)
        start = now(device)
        estimate = learner.step(batch, noise)
        loss = estimate.loss.item()
        seconds += now(device) - start
        flops += phase_flops[phase]
        if not math.isfinite(loss):
            record(step, loss, math.nan, "diverged")
            return result
        losses.append(loss)
        for name, value in estimate.diagnostics.items():
            logged.setdefault(name, []).append(float(value))
        snapshot(step)
        out_of_time = limit is not None and seconds >= limit
        last = step == steps or out_of_time
        if step % task.eval_every == 0 or last:
            acc = accuracy(model, data.x_val, data.y_val)
            record(step, sum(losses) / len(losses), acc, "completed" if last else "ok")
            losses = []
        if on_step is not None:
            on_step(step)
        if out_of_time:
            break
    return result
