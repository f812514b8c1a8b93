"""Calibrate task targets: backprop's final validation accuracy over several seeds.

    python -m runners.calibrate --tasks mlp-mnist1d vit-digits --seeds 5

Prints, per task, the median and range of backprop's final validation accuracy within the
task's budget at its default rate, and the suggested target: the largest multiple of 0.02 at
least 0.01 below the median.
"""

from __future__ import annotations

import argparse
import math
import statistics

from tabulate import tabulate
from tqdm import tqdm

from estimators import make_estimator
from measurements.device import resolve_device, use_available_cores
from measurements.train import Run, train
from tasks import TASKS, get_task


def suggested_target(median: float) -> float:
    """A round number a little under `median`: a multiple of 0.02, at least 0.01 below."""
    return round(math.floor((median - 0.01) * 50 + 1e-9) / 50, 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runners.calibrate", description=__doc__)
    parser.add_argument("--tasks", nargs="+", default=[n for n, t in TASKS.items() if t.embedded])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    use_available_cores()
    device = resolve_device(args.device)
    table = []
    for name in args.tasks:
        task = get_task(name)
        data = task.load().to(device)
        finals = []
        for seed in tqdm(range(args.seeds), desc=name, leave=False):
            run = Run(task, make_estimator("backprop"), seed, task.lr, device)
            finals.append(train(run, data).rows[-1]["val_acc"])
        median = statistics.median(finals)
        table.append([name, median, min(finals), max(finals), suggested_target(median)])
    print(tabulate(table, headers=["task", "median", "min", "max", "target"], floatfmt=".3f"))


if __name__ == "__main__":
    main()
