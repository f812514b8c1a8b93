"""R draws in one vectorised call against R single estimates, per estimator and task.

    python -m benchmarks.quality_draws [--draws 64] [--estimators fg-weight sparse-vjp ...]

Both ways draw at the same frozen state on the same batch; the two are timed alternately
(warm-up first, median of `--repeats`), and the table gives their ratio measured in this run.
The protocol asks R = 64 batched draws to be at least 4x faster than 64 single ones for the
forward-gradient and sparse-VJP estimators.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from tabulate import tabulate

from benchmarks.threads import add_threads_flag, apply_threads
from estimators import Batch, GradientEstimator, make_estimator
from runners.device import resolve_device
from runners.timing import timed
from tasks import get_task

DEFAULT = [
    "fg-weight",
    "fg-activity",
    "fg-wt",
    "fg-wperp-ns",
    "sparse-vjp",
    "sparse-vjp:sketch=minvar",
    "sparse-vjp:sketch=rank",
    "sparse-vjp:axis=unit",
]


def compare(
    est: GradientEstimator, batch: Batch, draws: int, repeats: int, device: torch.device
) -> tuple[float, float]:
    """Median seconds of R single estimates and of one call drawing R, timed alternately."""
    gen = torch.Generator(device=device).manual_seed(0)
    ways = {
        "single": lambda: [est.estimate(batch, gen) for _ in range(draws)],
        "batched": lambda: est.estimate_draws(batch, draws, gen),
    }
    for way in ways.values():
        way()
    seconds: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(repeats):
        for kind, way in ways.items():
            seconds[kind].append(timed(way, device))
    return statistics.median(seconds["single"]), statistics.median(seconds["batched"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_draws", description=__doc__)
    parser.add_argument("--estimators", nargs="+", default=DEFAULT)
    parser.add_argument("--tasks", nargs="+", default=["mlp-mnist1d", "vit-digits"])
    parser.add_argument("--draws", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    add_threads_flag(parser)
    args = parser.parse_args(argv)
    apply_threads(args)
    device = resolve_device(args.device)
    rows = []
    for task_name in args.tasks:
        task = get_task(task_name)
        data = task.load().to(device)
        batch = (data.x_train[: task.batch_size], data.y_train[: task.batch_size])
        for spec in args.estimators:
            torch.manual_seed(0)
            est = make_estimator(spec).bind(task.model().to(device), task.loss)
            single, batched = compare(est, batch, args.draws, args.repeats, device)
            rows.append([task.name, est.spec, args.draws, single, batched, single / batched])
    headers = ["task", "estimator", "R", "R single (s)", "batched (s)", "speed-up"]
    print(tabulate(rows, headers=headers, floatfmt=".3g"))


if __name__ == "__main__":
    main()
