"""cv-predicted against backprop: cost of a step, predictor memory, and variance vs closed form.

    python -m benchmarks.cv_predicted [--repeats 30] [--draws 200] [--threads N]

Cost (tasks mlp-mnist1d, vit-digits, bagnet-digits at their batch sizes, default parameters,
predictor fitted): FLOPs of a predict step (`count_flops`, the predictor included), the refit's
FLOPs amortised over `refit_every` steps, and the wall time of a training step (estimate,
optimizer step, update) interleaved with backprop's (warm-up first, alternating order, medians).
Goals: FLOP ratio <= 0.6 and time ratio <= 1.2 x FLOP ratio. Memory: `peak_bytes` of a step,
and the predictor's buffer.

Variance (same models in float64, after 50 backprop Adam steps; the predictor fitted on control
micro-batches at those parameters): R draws at one batch give the measured relative variance
(`quality_by_layer`, total); the closed form (1/c - 1/n) S_r^2 / ||g||^2 comes from per-example
gradients. Rows span alignments: buffers of 4, 8 (the default), 16 and 64 pairs, beta = 0 (no
control variate), beta fitted over the priming steps, and an oracle fitted on the batch's own
per-example pairs. The break-even alignment at the measured FLOP and time ratios (beta = 1) is
set beside the measured alignment and the effective one, sqrt(1 - S_r^2 / S_t^2): the cosine a
calibrated predictor at beta = 1 would need for that residual (beta's effect included), which is
what the variance and the break-even condition S_r^2 / S_t^2 < q see.
"""

from __future__ import annotations

import argparse
import math
import statistics
from typing import Any

import torch
from tabulate import tabulate
from torch import Tensor
from torch.func import functional_call, grad, vmap

from benchmarks.threads import add_threads_flag, apply_threads
from estimators import Batch, make_estimator
from estimators.cv_predicted import CVPredicted, break_even_alignment
from runners.flops import count_flops
from runners.memory import peak_bytes
from runners.quality import quality_by_layer
from runners.timing import timed
from runners.train import Learner, batches
from tasks import Task, get_task

TASKS = ("mlp-mnist1d", "vit-digits", "bagnet-digits")
CPU = torch.device("cpu")


def _stream(task: Task, seed: int, dtype: torch.dtype = torch.float32) -> Any:
    data = task.load()
    for idx in batches(len(data.x_train), task.batch_size, torch.Generator().manual_seed(seed)):
        yield data.x_train[idx].to(dtype), data.y_train[idx]


def cost_rows(task: Task, repeats: int) -> dict[str, Any]:
    """FLOPs, time and memory of a predict step against backprop's, on one task."""
    stream = _stream(task, 0)
    noise = torch.Generator().manual_seed(1)
    cv = Learner.create(task, make_estimator("cv-predicted"), 0, task.lr, CPU)
    bp = Learner.create(task, make_estimator("backprop"), 0, task.lr, CPU)
    est = cv.estimator
    assert isinstance(est, CVPredicted)
    batch: Batch = next(stream)
    warmup_flops = count_flops(lambda: est.estimate(batch, noise))
    for _ in range(est.prime_steps()):
        cv.step(next(stream), noise)
    assert est.phase() == "predict"
    bp_flops = count_flops(lambda: bp.estimator.estimate(batch, noise))
    cv_flops = count_flops(lambda: est.estimate(batch, noise))
    signals = torch.zeros(2, est.predictor.signals.shape[1])  # type: ignore[union-attr]
    predict_flops = count_flops(lambda: est.predictor.predict(signals))
    est.predictor.observe(*est.estimate(batch, noise).feedback.pairs[0])
    refit_flops = count_flops(est.predictor.refit) / est.refit_every
    for _ in range(5):
        cv.step(next(stream), noise)
        bp.step(next(stream), noise)
    seconds: dict[str, list[float]] = {"cv": [], "bp": []}
    for i in range(repeats):
        pair = [("cv", cv), ("bp", bp)]
        for kind, learner in pair if i % 2 == 0 else pair[::-1]:
            b = next(stream)
            seconds[kind].append(timed(lambda lr=learner, b=b: lr.step(b, noise), CPU))
    memory = {k: peak_bytes(lambda lr=lr: lr.step(next(stream), noise), CPU)
              for k, lr in (("cv", cv), ("bp", bp))}  # fmt: skip
    flop_ratio = (cv_flops + refit_flops) / bp_flops
    time_ratio = statistics.median(seconds["cv"]) / statistics.median(seconds["bp"])
    return {
        "task": task.name,
        "batch": task.batch_size,
        "backprop MFLOP": bp_flops / 1e6,
        "warmup / bp": warmup_flops / bp_flops,
        "predict / bp": cv_flops / bp_flops,
        "of which predictor": predict_flops / bp_flops,
        "refit / bp (amortised)": refit_flops / bp_flops,
        "FLOP ratio": flop_ratio,
        "time ratio": time_ratio,
        "time / FLOP ratio": time_ratio / flop_ratio,
        "bp step ms": 1e3 * statistics.median(seconds["bp"]),
        "peak MB cv": memory["cv"] / 1e6,
        "peak MB bp": memory["bp"] / 1e6,
        "buffer MB": est.predictor.nbytes / 1e6,
    }


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


def variance_rows(task: Task, draws: int, kappa: dict[str, float]) -> list[dict[str, Any]]:
    """Measured vs closed-form relative variance at several alignments, one task (float64)."""
    stream = _stream(task, 0, torch.float64)
    trainer = Learner.create(task, make_estimator("backprop"), 0, task.lr, CPU)
    model = trainer.model.double()
    trainer.optimizer = torch.optim.Adam(list(trainer.params.values()), lr=task.lr)
    for _ in range(50):
        trainer.step(next(stream), torch.Generator())
    batch = next(stream)
    exact = make_estimator("backprop").bind(model, task.loss).estimate(batch, torch.Generator())
    settings = [("buffer 4", "buffer=4", None), ("buffer 8 (default)", "buffer=8", None),
                ("buffer 16", "buffer=16", None), ("buffer 64", "buffer=64", None),
                ("buffer 8, beta 0", "buffer=8,beta=0", None),
                ("buffer 8, fitted beta", "buffer=8,fit_beta=true", None),
                ("oracle (own batch)", f"buffer={task.batch_size}", "oracle")]  # fmt: skip
    rows = []
    for label, params, kind in settings:
        noise = torch.Generator().manual_seed(2)
        est = make_estimator(f"cv-predicted:{params}").bind(model, task.loss)
        assert isinstance(est, CVPredicted)
        z, t = _per_example(est, batch)
        if kind == "oracle":
            for zi, ti in zip(z, t, strict=True):
                est.predictor.observe(zi, ti)
            est.predictor.refit()
        else:
            for _ in range(est.prime_steps()):
                est.update(est.estimate(next(stream), noise))
        sample = [est.estimate(batch, noise) for _ in range(draws)]
        stacked = {k: torch.stack([s.grads[k] for s in sample]) for k in exact.grads}
        total = quality_by_layer(stacked, exact.grads)["total"]
        n, c = len(batch[0]), est.control_size(len(batch[0]))
        resid = t - est.current_beta() * est.predictor.predict(z)
        s_r = (resid - resid.mean(0)).pow(2).sum() / (n - 1)
        s_t = (t - t.mean(0)).pow(2).sum() / (n - 1)
        g2 = sum(v.pow(2).sum() for v in exact.grads.values())
        closed = ((1 / c - 1 / n) * s_r / g2).item()
        ratio = (s_r / s_t).item()
        f = est.fraction
        rows.append({
            "task": task.name, "predictor": label, "beta": est.current_beta(),
            "alignment": statistics.mean(s.diagnostics["alignment"] for s in sample),
            "eff. alignment": math.sqrt(max(0.0, 1 - ratio)),
            "S_r^2/S_t^2": ratio,
            "rel var measured": total["rel_variance"], "rel var closed form": closed,
            "measured/closed": total["rel_variance"] / closed, "rel bias": total["rel_bias"],
            "break-even (FLOPs)": break_even_alignment(kappa["flop"], f),
            "break-even (time)": break_even_alignment(kappa["time"], f),
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cv_predicted")
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per learner")
    parser.add_argument("--draws", type=int, default=200, help="estimates per variance row")
    add_threads_flag(parser)
    parser.add_argument("--skip-variance", action="store_true", help="the cost table only")
    args = parser.parse_args()
    apply_threads(args)
    print(f"threads: {torch.get_num_threads()}")
    costs = [cost_rows(get_task(name), args.repeats) for name in TASKS]
    print("\nCost of a step at the default split (fraction 0.75), predictor fitted:")
    print(tabulate(costs, headers="keys", floatfmt=".3f"))
    if args.skip_variance:
        return
    rows = []
    for cost in costs:
        kappa = {"flop": cost["FLOP ratio"], "time": cost["time ratio"]}
        rows += variance_rows(get_task(cost["task"]), args.draws, kappa)
    print(f"\nRelative variance over {args.draws} random splits, measured vs closed form:")
    print(tabulate(rows, headers="keys", floatfmt=".3f"))


if __name__ == "__main__":
    main()
