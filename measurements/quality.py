"""Gradient quality of one estimator on one task and seed, at each trajectory checkpoint.

At a checkpoint the parameters are fixed; stateful estimators first run `prime_steps()` steps of
estimate + update on fresh batches (parameters unchanged) so they are measured at a fitted state.
One mini-batch B is fixed, its exact gradient g computed by backprop, and R draws taken at one
frozen state (`estimate_draws`). Per layer and in total: cosine, relative bias with its standard
error and the bias test, variance and MSE (`measurements.gradient_stats`).

Work-normalised MSE, against the full-data gradient G kept with the checkpoint (the training set
or its first `FULL_DATA` examples), scale-invariant and against an exact yardstick: over K
batches (B with its R draws and K - 1 more, max(2, R / K) draws each, every batch weighted 1/K),
with c* = E<g_hat, G> / E||g_hat||^2 (`work_scale`, the scale a tuned learning rate applies),
  work_mse = E||c* g_hat - G||^2 / (M ||G||^2 / (||G||^2 + M)) * FLOPs(estimate) / FLOPs(backprop),
M = E||g_B - G||^2 = (N - B) / (B (N - 1)) mean_i ||g_i - G||^2 the exact error of a backprop
mini-batch of B of the N examples (`Checkpoint.minibatch_mse`), and M ||G||^2 / (||G||^2 + M)
that mini-batch's exact error at its own best scale (a tuned rate rescales backprop too; against
M itself backprop would score ||G||^2 / (||G||^2 + M), 0.12-0.27 on mlp-mnist1d, where M is 3-7
times ||G||^2). `work_floor`: what an estimate without information about G scores (c* = 0, error
||G||^2), times the same factor; an interval reaching it means "uninformative at these draws",
whatever its value against 1. `work_mse_lo/hi`: the numerator's 95% t-interval over the K
batch means (`gradient_stats.scaled_error`). Below 1 (interval included) the estimator, at its
best scale, gives more gradient information per FLOP than a backprop mini-batch at its best
scale; no fixed
scale of an estimate changes the figure. An estimate with no information about G (c* -> 0) scores
(1 + ||G||^2 / M) times its FLOP ratio: a figure at that level means uninformative, not efficient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from estimators import Batch, make_estimator
from measurements.checkpoints import Checkpoint, load_params, trajectory
from measurements.context import Context
from measurements.flops import count_flops
from measurements.gradient_stats import (
    layer_sums,
    quality_by_layer,
    scaled_error,
    scaled_minibatch_error,
)
from measurements.train import batches
from tasks import Task

WORK_BATCHES = 4  # batches the work-normalised MSE averages over


def _sq_norms(grads: dict[str, Tensor]) -> dict[str, Tensor]:
    """||g_hat||^2 per draw, per layer and 'total' (float64); grads carry a leading draws axis."""
    return layer_sums({n: g.double().flatten(1).pow(2).sum(1) for n, g in grads.items()})


def _inner(grads: dict[str, Tensor], full: dict[str, Tensor]) -> dict[str, Tensor]:
    """<g_hat, G> per draw, per layer and 'total' (float64)."""
    return layer_sums(
        {n: g.double().flatten(1) @ full[n].double().flatten() for n, g in grads.items()}
    )


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
    norm2: dict[str, list[Tensor]] = {}
    inner: dict[str, list[Tensor]] = {}
    for k in range(WORK_BATCHES):
        d = sample if k == 0 else est.estimate_draws(batch(), max(2, draws // WORK_BATCHES), noise)
        for layer, v in _sq_norms(d.grads).items():
            norm2.setdefault(layer, []).append(v)
        for layer, v in _inner(d.grads, full).items():
            inner.setdefault(layer, []).append(v)
    target2 = {k: v.item() for k, v in _sq_norms({n: t[None] for n, t in full.items()}).items()}
    yardstick = point.minibatch_mse(len(first[0]))
    work = count_flops(lambda: est.estimate(first, noise)) / count_flops(
        lambda: exact.estimate(first, noise)
    )
    base = {"task": task.name, "estimator": est.name, "params": est.params_str, "seed": seed,
            "checkpoint": step}  # fmt: skip
    rows = []
    for layer, s in quality_by_layer(sample.grads, g).items():
        scale, num, lo, hi = scaled_error(norm2[layer], inner[layer], target2[layer])
        per = work / scaled_minibatch_error(yardstick[layer], target2[layer])
        rows.append({**base, "layer": layer, **s, "work_mse": num * per, "work_mse_lo": lo * per,
                     "work_mse_hi": hi * per, "work_scale": scale,
                     "work_floor": target2[layer] * per})  # fmt: skip
    return rows
