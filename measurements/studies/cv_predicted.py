"""cv-predicted against backprop: cost of a step, predictor memory, and variance vs closed form.

    python -m runners.study cv-predicted[:repeats=30,draws=200,tasks=vit-digits,variance=false]

Cost (`cv_predicted_cost.csv`, one row per task: mlp-mnist1d, vit-digits, bagnet-digits at their
batch sizes, cv-predicted at `fraction` and `buffer`, predictor fitted): FLOPs of a predict step
(`count_flops`, the predictor included) over backprop's, the refit's FLOPs amortised over
`refit_every` steps, and the wall time of a training step (estimate, optimizer step, update)
against backprop's, the two learners timed by `measurements.timing.interleaved` (warm-up, then
rounds in rotating order, medians). Goals: FLOP ratio <= 0.6 and time ratio <= 1.2 x FLOP
ratio. Memory: `peak_bytes` of a step of each, and the predictor's buffer.

Variance (`cv_predicted_variance.csv`, one row per task and predictor; same models in float64,
after `pretrain` backprop Adam steps; the predictor fitted on control micro-batches at those
parameters): `draws` draws at one batch give the measured relative variance
(`quality_by_layer`, total); the closed form (1/c - 1/n) S_r^2 / ||g||^2 comes from per-example
gradients. Rows span alignments: buffers of `buffers` pairs (4, 8, 16 and 64, beta fitted as
by default), at the default buffer beta = 0 (no control variate) and a fixed beta = 1, and an
oracle fitted on the batch's own per-example pairs. The break-even alignment at the task's
measured FLOP and time ratios (beta = 1, the cost table's) is set beside the measured alignment
and the effective one, sqrt(1 - S_r^2 / S_t^2): the cosine a calibrated predictor at beta = 1
would need for that residual (beta's effect included), which is what the variance and the
break-even condition S_r^2 / S_t^2 < q see. `reports/cv_predicted.py` draws both tables.

The helpers below the tables' code (`cv_spec`, `break_even`, `where`) are shared with
`measurements.studies.cv_vit_digits`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap

from estimators import Batch, make_estimator
from estimators.cv_predicted import CVPredicted, break_even_alignment
from measurements.flops import count_flops
from measurements.gradient_stats import quality_by_layer
from measurements.memory import peak_bytes
from measurements.study import Rows, Study
from measurements.timing import interleaved
from measurements.train import Learner, batches
from tasks import Task, get_task
from tasks.data import Splits

COST = "cv_predicted_cost.csv"
VARIANCE = "cv_predicted_variance.csv"
CV = "cv-predicted"


@dataclass(frozen=True)
class Settings:
    """Tasks by name or spec (`;` for `,` in a spec's options: `vit-digits:dim=8;depth=1`);
    batch 0: each task's own batch size."""

    tasks: tuple[str, ...] = ("mlp-mnist1d", "vit-digits", "bagnet-digits")
    fraction: float = 0.75
    buffer: int = 64
    repeats: int = 30
    warmup: int = 5
    variance: bool = True
    draws: int = 200
    buffers: tuple[int, ...] = (4, 8, 16, 64)
    pretrain: int = 50
    batch: int = 0
    seed: int = 0


# Shared with measurements.studies.cv_vit_digits.


def cv_spec(params: str) -> str:
    """The cv-predicted spec with `params` (`key=value,...`)."""
    return f"{CV}:{params}" if params else CV


def break_even(cost_ratio: float, fraction: float) -> float:
    """`break_even_alignment` at beta = 1; NaN where it is undefined (nothing predicted, a
    cost ratio that is not a positive number)."""
    if not (0 < fraction < 1 and cost_ratio > 0 and math.isfinite(cost_ratio)):
        return math.nan
    return break_even_alignment(cost_ratio, fraction)


def where(device: torch.device) -> dict[str, Any]:
    """The columns that say where a row was measured."""
    return {"device": str(device), "threads": torch.get_num_threads()}


# The cost table.


def _stream(
    task: Task, data: Splits, seed: int, device: torch.device, dtype: torch.dtype
) -> Iterator[Batch]:
    """The task's training batches in a seeded order, on `device` as `dtype`."""
    for idx in batches(len(data.x_train), task.batch_size, torch.Generator().manual_seed(seed)):
        yield data.x_train[idx].to(device, dtype), data.y_train[idx].to(device)


def _task(name: str, s: Settings) -> Task:
    task = get_task(name.replace(";", ","))
    return dataclasses.replace(task, batch_size=s.batch) if s.batch else task


def _stepper(
    learner: Learner, stream: Iterator[Batch], calls: int, noise: torch.Generator
) -> Callable[[], object]:
    """One training step per call on batches drawn beforehand (no data loading timed)."""
    drawn = itertools.cycle([next(stream) for _ in range(calls)])
    return lambda: learner.step(next(drawn), noise)


def cost_row(task: Task, data: Splits, s: Settings, device: torch.device) -> dict[str, Any]:
    """FLOPs, time and memory of a predict step against backprop's, on one task."""
    stream = _stream(task, data, s.seed, device, torch.float32)
    noise = torch.Generator(device=device).manual_seed(s.seed + 1)
    spec = cv_spec(f"fraction={s.fraction:g},buffer={s.buffer}")
    cv = Learner.create(task, make_estimator(spec), s.seed, task.lr, device)
    bp = Learner.create(task, make_estimator("backprop"), s.seed, task.lr, device)
    est = cv.estimator
    assert isinstance(est, CVPredicted)
    batch = next(stream)
    warmup_flops = count_flops(lambda: est.estimate(batch, noise))
    for _ in range(est.prime_steps()):
        cv.step(next(stream), noise)
    assert est.phase() == "predict"
    bp_flops = count_flops(lambda: bp.estimator.estimate(batch, noise))
    cv_flops = count_flops(lambda: est.estimate(batch, noise))
    signals = est.predictor.signals  # type: ignore[attr-defined]
    probe = torch.zeros(2, signals.shape[1], device=device, dtype=signals.dtype)
    predict_flops = count_flops(lambda: est.predictor.predict(probe))
    est.predictor.observe(*est.estimate(batch, noise).feedback.pairs[0])
    refit_flops = count_flops(est.predictor.refit) / est.refit_every
    calls = s.warmup + s.repeats
    ways = {"cv": _stepper(cv, stream, calls, noise), "bp": _stepper(bp, stream, calls, noise)}
    times = interleaved(ways, device, warmup=s.warmup, repeats=s.repeats, min_repeats=s.repeats)
    memory = {k: peak_bytes(way, device) for k, way in ways.items()}
    flop_ratio = (cv_flops + refit_flops) / bp_flops
    time_ratio = times.ratio("cv", "bp")
    return {
        "task": task.name, "batch": task.batch_size, "params": est.params_str,
        "fraction": est.fraction, "seed": s.seed, **where(device), "repeats": times.rounds,
        "bp_mflop": bp_flops / 1e6, "warmup_flop_ratio": warmup_flops / bp_flops,
        "predict_flop_ratio": cv_flops / bp_flops, "predictor_flop_ratio": predict_flops / bp_flops,
        "refit_flop_ratio": refit_flops / bp_flops, "flop_ratio": flop_ratio,
        "time_ratio": time_ratio, "time_per_flop_ratio": time_ratio / flop_ratio,
        "bp_step_ms": 1e3 * times.median("bp"), "cv_step_ms": 1e3 * times.median("cv"),
        "peak_mb_cv": memory["cv"] / 1e6, "peak_mb_bp": memory["bp"] / 1e6,
        "buffer_mb": est.predictor.nbytes / 1e6,
    }  # fmt: skip


# The variance table.


def _per_example(est: CVPredicted, batch: Batch) -> tuple[Tensor, Tensor]:
    """Per-example head signals (n, d_z) and trunk gradients (n, d_t)."""
    model, loss = est.model, est.loss
    params = {n: p.detach() for n, p in model.named_parameters()}

    def one(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return loss(functional_call(model, p, (x[None],)), y[None]).sum()

    g = vmap(grad(one), in_dims=(None, 0, 0))(params, *batch)
    n = len(batch[0])
    z = torch.cat([g[k].reshape(n, -1) for k in est.head.names], 1)
    t = torch.cat([g[k].reshape(n, -1) for k in est.trunk], 1)
    return z, t


def _predictors(s: Settings, n: int) -> list[tuple[str, int, str, bool]]:
    """(label, buffer, params, oracle) of every variance row."""
    b = s.buffer
    rows = [(f"buffer {m}" + (" (default)" if m == b else ""), m, f"buffer={m}", False)
            for m in s.buffers]  # fmt: skip
    return [*rows, (f"buffer {b}, beta 0", b, f"buffer={b},beta=0,fit_beta=false", False),
            (f"buffer {b}, beta 1", b, f"buffer={b},beta=1,fit_beta=false", False),
            ("oracle (own batch)", n, f"buffer={n}", True)]  # fmt: skip


def variance_rows(
    task: Task, data: Splits, s: Settings, device: torch.device, cost: dict[str, Any]
) -> list[dict[str, Any]]:
    """Measured vs closed-form relative variance at several alignments, one task (float64)."""
    stream = _stream(task, data, s.seed, device, torch.float64)
    trainer = Learner.create(task, make_estimator("backprop"), s.seed, task.lr, device)
    model = trainer.model.double()
    trainer.optimizer = torch.optim.Adam(list(trainer.params.values()), lr=task.lr)
    for _ in range(s.pretrain):
        trainer.step(next(stream), torch.Generator(device=device))
    batch = next(stream)
    n = len(batch[0])
    noise = torch.Generator(device=device)
    exact = make_estimator("backprop").bind(model, task.loss).estimate(batch, noise)
    g2 = sum(v.pow(2).sum() for v in exact.grads.values())
    rows = []
    for label, buffer, params, oracle in _predictors(s, n):
        noise = torch.Generator(device=device).manual_seed(s.seed + 2)
        spec = cv_spec(f"fraction={s.fraction:g},{params}")
        est = make_estimator(spec).bind(model, task.loss)
        assert isinstance(est, CVPredicted)
        z, t = _per_example(est, batch)
        if oracle:
            for zi, ti in zip(z, t, strict=True):
                est.predictor.observe(zi, ti)
            est.predictor.refit()
        else:
            for _ in range(est.prime_steps()):
                est.update(est.estimate(next(stream), noise))
        sample = [est.estimate(batch, noise) for _ in range(s.draws)]
        stacked = {k: torch.stack([d.grads[k] for d in sample]) for k in exact.grads}
        total = quality_by_layer(stacked, exact.grads)["total"]
        c = est.control_size(n)
        resid = t - est.current_beta() * est.predictor.predict(z)
        s_r = (resid - resid.mean(0)).pow(2).sum() / (n - 1)
        s_t = (t - t.mean(0)).pow(2).sum() / (n - 1)
        closed = ((1 / c - 1 / n) * s_r / g2).item()
        ratio = (s_r / s_t).item()
        measured = float(total["rel_variance"])
        rows.append({
            "task": task.name, "batch": n, "control": c, "fraction": est.fraction,
            "seed": s.seed, "device": str(device), "draws": s.draws, "predictor": label,
            "buffer": buffer, "params": est.params_str, "beta": est.current_beta(),
            "alignment": statistics.mean(d.diagnostics["alignment"] for d in sample),
            "eff_alignment": math.sqrt(max(0.0, 1 - ratio)), "residual_ratio": ratio,
            "rel_var_measured": measured, "rel_var_closed": closed,
            "measured_over_closed": measured / closed, "rel_bias": float(total["rel_bias"]),
            "flop_ratio": cost["flop_ratio"], "time_ratio": cost["time_ratio"],
            "break_even_flops": break_even(cost["flop_ratio"], est.fraction),
            "break_even_time": break_even(cost["time_ratio"], est.fraction),
        })  # fmt: skip
    return rows


def measure(s: Settings, device: torch.device) -> Rows:
    rows: Rows = {COST: [], VARIANCE: []}
    for name in s.tasks:
        task = _task(name, s)
        data = task.load()
        cost = cost_row(task, data, s, device)
        rows[COST].append(cost)
        if s.variance:
            rows[VARIANCE] += variance_rows(task, data, s, device, cost)
    return rows


SMOKE = Settings(
    tasks=("vit-digits:depth=1;dim=8;heads=1", "bagnet-digits:width=8"),
    buffer=2,
    repeats=2,
    warmup=1,
    draws=3,
    buffers=(2,),
    pretrain=2,
    batch=16,
)
STUDY = Study(
    name="cv-predicted",
    summary="cv-predicted against backprop: step FLOPs, time and memory; variance vs closed form",
    files=(COST, VARIANCE),
    settings=Settings,
    smoke=SMOKE,
    measure=measure,
)
