"""Gradient quality of one estimator on one task and seed, at each trajectory checkpoint.

At a checkpoint the parameters are fixed; stateful estimators first run `prime_steps()` steps of
estimate + update on fresh batches (parameters unchanged) so they are measured at a fitted state.
One mini-batch B is fixed, its exact gradient g computed by backprop, and R draws taken at one
frozen state (`estimate_draws`). Per layer and in total: cosine, relative bias, variance and MSE
(`measurements.gradient_stats`).

Work-normalised MSE, against the full-data gradient G kept with the checkpoint (the training set
or its first `FULL_DATA` examples): over K batches (B and K - 1 more, R / K draws each, >= 2),
  work_mse = mean ||g_hat - G||^2 / mean ||g_k - G||^2 * FLOPs(estimate) / FLOPs(backprop).
Below 1 the estimator gives more gradient information per FLOP than a backprop mini-batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from estimators import Batch, make_estimator
from measurements.checkpoints import Checkpoint, load_params, trajectory
from measurements.context import Context
from measurements.flops import count_flops
from measurements.gradient_stats import layer_of, quality_by_layer
from measurements.train import batches
from tasks import Task

WORK_BATCHES = 4  # batches the work-normalised MSE averages over


def _layer_sq_dist(grads: dict[str, Tensor], ref: dict[str, Tensor]) -> dict[str, Tensor]:
    """||a - b||^2 per layer and 'total'; `grads` may carry a leading draws axis (then per draw)."""
    out: dict[str, Tensor] = {}
    for name, g in grads.items():
        d = (g - ref[name]).pow(2)
        d = d.reshape(d.shape[0], -1).sum(1) if g.dim() > ref[name].dim() else d.sum()
        out[layer_of(name)] = out.get(layer_of(name), 0) + d.double()
        out["total"] = out.get("total", 0) + d.double()
    return out


def measure_quality(task: Task, spec: str, seed: int, ctx: Context) -> list[dict[str, Any]]:
    """Quality rows (`quality.csv`) for every layer and checkpoint."""
    points = trajectory(task, seed, ctx.budget(task).steps, ctx.data(task), ctx.device, ctx.folder)
    return [
        row for step, state in points.items() for row in _at(task, spec, seed, step, state, ctx)
    ]


def _at(
    task: Task, spec: str, seed: int, step: int, point: Checkpoint, ctx: Context
) -> list[dict[str, Any]]:
    """Quality rows at one checkpoint."""
    device, data, draws, full = ctx.device, ctx.data(task), ctx.draws, point.full_grad
    model = load_params(task.model().to(device), point.params)
    est = make_estimator(spec).bind(model, task.loss)
    exact = make_estimator("backprop").bind(model, task.loss)
    order = batches(len(data.x_train), task.batch_size, torch.Generator().manual_seed(seed + step))
    noise = torch.Generator(device=device).manual_seed(seed + step + 1)

    def batch() -> Batch:
        idx = next(order).to(device)
        return data.x_train[idx], data.y_train[idx]

    for _ in range(est.prime_steps()):
        est.update(est.estimate(batch(), noise))
    first = batch()
    g = exact.estimate(first, noise).grads
    sample = est.estimate_draws(first, draws, noise)
    est_err: dict[str, Tensor] = {}
    ref_err: dict[str, Tensor] = {}
    for k in range(WORK_BATCHES):
        b = first if k == 0 else batch()
        d = sample if k == 0 else est.estimate_draws(b, max(2, draws // WORK_BATCHES), noise)
        gk = g if k == 0 else exact.estimate(b, noise).grads
        for layer, v in _layer_sq_dist(d.grads, full).items():
            est_err[layer] = est_err.get(layer, 0) + v.mean() / WORK_BATCHES
        for layer, v in _layer_sq_dist(gk, full).items():
            ref_err[layer] = ref_err.get(layer, 0) + v / WORK_BATCHES
    work = count_flops(lambda: est.estimate(first, noise)) / count_flops(
        lambda: exact.estimate(first, noise)
    )
    base = {"task": task.name, "estimator": est.name, "params": est.params_str, "seed": seed,
            "checkpoint": step}  # fmt: skip
    return [
        {**base, "layer": layer, **s, "work_mse": (est_err[layer] / ref_err[layer]).item() * work}
        for layer, s in quality_by_layer(sample.grads, g).items()
    ]
