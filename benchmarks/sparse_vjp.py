"""sparse-vjp: is the saving real? Backward and step time against FLOPs, and per-layer variance.

    python -m benchmarks.sparse_vjp [--repeats 20] [--draws 64] [--threads N]

Cost table: for each model (the task's own, then a wider one with a larger batch to show the
trend) dense backprop and sparse-vjp at keep 0.25 with row and unit sparsity run the same
forward + backward on the same batch, timed alternately (warm-up first, median of `--repeats`
samples; a sample averages consecutive calls lasting about 50 ms, so sub-millisecond steps are
not lost in timer and scheduler noise); forward and backward are timed separately inside each
call. FLOPs come from `FlopCounterMode` (`runners.flops.count_flops`): the backward's are the
estimate's minus the forward's. Goals (issue 6): backward time <= 0.45x dense (ideal 0.25x)
and step time ratio <= 1.25x the step FLOP ratio.

Variance table: per-layer relative variance sum_r ||g_r - mean||^2 / ((R - 1) ||g||^2)
(`runners.quality`) of R draws at initialisation (seed 0), uniform vs minvar at keep 0.25.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch
from tabulate import tabulate
from torch import nn

from benchmarks.threads import add_threads_flag, apply_threads
from estimators import Batch, make_estimator, trainable_parameters
from estimators.sparse_vjp import SparseVJP
from runners.flops import count_flops
from runners.quality import quality_by_layer
from tasks import Task, get_task

# (task spec, batch size; None: the task's own)
MODELS = [
    ("mlp-mnist1d", None),
    ("mlp-mnist1d:width=1024", 512),
    ("vit-digits", None),
    ("vit-digits:dim=256", 256),
]
CONFIGS = [
    "backprop",
    "sparse-vjp:keep=0.25,axis=row",
    "sparse-vjp:keep=0.25,axis=unit",
    "sparse-vjp:keep=0.25,axis=row,sketch=minvar",
]
BLOCK_SECONDS = 0.05  # each timed sample averages enough calls to last about this long
VARIANCE_TASKS = ["mlp-mnist1d", "vit-digits"]
VARIANCE_SPECS = [f"sparse-vjp:keep=0.25,axis={a},sketch={s}"
                  for a in ("row", "unit") for s in ("uniform", "minvar")]  # fmt: skip


def _setup(task: Task, batch_size: int | None) -> tuple[nn.Module, Batch]:
    data = task.load()
    size = batch_size or task.batch_size
    torch.manual_seed(0)
    return task.model(), (data.x_train[:size], data.y_train[:size])


@dataclass
class Contender:
    """One configuration on one model and batch: a timed forward + backward, and its FLOPs."""

    run: Callable[[], tuple[float, float]]  # one forward + backward: (forward s, backward s)
    forward_flops: int
    step_flops: int
    times: list[tuple[float, float]] = field(default_factory=list)

    @classmethod
    def create(cls, spec: str, model: nn.Module, task: Task, batch: Batch) -> Contender:
        est = make_estimator(spec).bind(model, task.loss)
        params = list(trainable_parameters(model).values())
        gen = torch.Generator().manual_seed(0)
        x, y = batch

        def routing() -> AbstractContextManager[None]:
            return est.sketching(gen) if isinstance(est, SparseVJP) else nullcontext()

        def run() -> tuple[float, float]:
            with routing():
                start = time.perf_counter()
                loss = task.loss(model(x), y).mean()
                middle = time.perf_counter()
                torch.autograd.grad(loss, params)
                return middle - start, time.perf_counter() - middle

        def forward() -> None:
            with routing(), torch.no_grad():
                task.loss(model(x), y).mean()

        return cls(run, count_flops(forward), count_flops(lambda: est.estimate(batch, gen)))

    def block(self, calls: int) -> tuple[float, float]:
        """Mean (forward s, backward s) over `calls` consecutive calls."""
        times = [self.run() for _ in range(calls)]
        return sum(t[0] for t in times) / calls, sum(t[1] for t in times) / calls

    def backward_seconds(self) -> float:
        return statistics.median(t[1] for t in self.times)

    def step_seconds(self) -> float:
        return statistics.median(t[0] + t[1] for t in self.times)


def cost_table(repeats: int) -> list[list]:
    rows = []
    for spec_task, batch_size in MODELS:
        task = get_task(spec_task)
        model, batch = _setup(task, batch_size)
        contenders = {spec: Contender.create(spec, model, task, batch) for spec in CONFIGS}
        warm = [c.run() for c in contenders.values() for _ in range(3)]
        calls = max(1, round(BLOCK_SECONDS / min(sum(t) for t in warm)))
        for _ in range(repeats):
            for c in contenders.values():
                c.times.append(c.block(calls))
        dense = contenders["backprop"]
        dense_bwd_flops = dense.step_flops - dense.forward_flops
        for spec in CONFIGS[1:]:
            c = contenders[spec]
            bwd_time = c.backward_seconds() / dense.backward_seconds()
            bwd_flops = (c.step_flops - c.forward_flops) / dense_bwd_flops
            step_time = c.step_seconds() / dense.step_seconds()
            step_flops = c.step_flops / dense.step_flops
            rows.append([task.name, len(batch[0]), spec.removeprefix("sparse-vjp:"),
                         1e3 * dense.backward_seconds(), bwd_time, bwd_flops, step_time,
                         step_flops, step_time / step_flops])  # fmt: skip
    return rows


def variance_table(draws: int) -> dict[str, list[list]]:
    tables = {}
    for name in VARIANCE_TASKS:
        task = get_task(name)
        model, batch = _setup(task, None)
        backprop = make_estimator("backprop").bind(model, task.loss)
        exact = backprop.estimate(batch, torch.Generator()).grads
        columns = []
        for spec in VARIANCE_SPECS:
            est = make_estimator(spec).bind(model, task.loss)
            got = est.estimate_draws(batch, draws, torch.Generator().manual_seed(0)).grads
            columns.append({k: v["rel_variance"] for k, v in quality_by_layer(got, exact).items()})
        tables[name] = [[layer, *(c[layer] for c in columns)] for layer in columns[0]]
    return tables


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sparse_vjp", description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--draws", type=int, default=64)
    add_threads_flag(parser)
    args = parser.parse_args(argv)
    threads = apply_threads(args)
    print(f"CPU, {threads} threads; median of {args.repeats} interleaved repeats\n")
    headers = ["task", "batch", "sparse-vjp", "dense bwd (ms)", "bwd time ratio",
               "bwd FLOP ratio", "step time ratio", "step FLOP ratio",
               "time / FLOP ratio"]  # fmt: skip
    print(tabulate(cost_table(args.repeats), headers=headers, floatfmt=".3g"))
    for name, rows in variance_table(args.draws).items():
        print(f"\nper-layer relative variance, {name}, keep 0.25, R = {args.draws} draws")
        names = [s.removeprefix("sparse-vjp:keep=0.25,") for s in VARIANCE_SPECS]
        print(tabulate(rows, headers=["layer", *names], floatfmt=".3g"))


if __name__ == "__main__":
    main()
