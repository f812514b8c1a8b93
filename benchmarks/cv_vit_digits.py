"""Validation accuracy against wall-clock time on vit-digits: backprop vs cv-predicted.

    python -m benchmarks.cv_vit_digits [--seeds 3] [--fractions 0.5 0.75 0.875] [--threads 1]
        [--extra cv-predicted:fraction=0.75,buffer=64]

Tests the claim of Ciosek et al. (2025): predicting the gradient of 3/4 of each batch reaches a
given validation accuracy sooner in wall-clock time than full backprop. Every run is a real
`runners.train.train` run (seconds count training steps only, evaluation excluded). Per seed,
backprop trains for the task's 800 steps first; its training time is then the time budget of
each cv-predicted run (task `seconds` cap, steps uncapped), so all methods get the same time.
Runs alternate between methods within a seed. Reported: accuracy at fractions of that budget,
time to reach 0.90 and the task target 0.94, and the alignment against the break-even.
Mean and standard error over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
from typing import Any

import torch
from tabulate import tabulate

from benchmarks.threads import add_threads_flag, apply_threads
from estimators import make_estimator
from estimators.cv_predicted import break_even_alignment
from runners.train import Run, TrainResult, train
from tasks import get_task

TARGETS = (0.90, 0.94)
BUDGETS = (0.25, 0.5, 0.75, 1.0)


def _mean_se(values: list[float]) -> str:
    """`mean ± standard error` (over seeds); `-` when empty."""
    if not values:
        return "-"
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return f"{statistics.mean(values):.3f} ± {se:.3f}"


def _acc_at(result: TrainResult, seconds: float) -> float:
    """Validation accuracy of the last evaluation within `seconds` of training time."""
    return [r["val_acc"] for r in result.rows if r["seconds"] <= seconds][-1]


def _time_to(result: TrainResult, target: float) -> float | None:
    return next((r["seconds"] for r in result.rows if r["val_acc"] >= target), None)


def _diagnostic(result: TrainResult, name: str) -> float:
    values = [r["value"] for r in result.diagnostics if r["name"] == name]
    return statistics.mean(values) if values else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cv_vit_digits")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.75, 0.875])
    parser.add_argument("--extra", nargs="*", default=[], help="more cv-predicted specs to run")
    parser.add_argument("--steps", type=int, help="backprop's steps (default: the task's)")
    add_threads_flag(parser)
    args = parser.parse_args()
    apply_threads(args)
    task = get_task("vit-digits")
    data = task.load()
    steps = args.steps or task.steps
    methods = ["backprop"] + [f"cv-predicted:fraction={f:g}" for f in args.fractions] + args.extra
    runs: dict[str, list[TrainResult]] = {m: [] for m in methods}
    budgets: list[float] = []
    cpu = torch.device("cpu")
    print(f"threads: {torch.get_num_threads()}, backprop steps: {steps}, seeds: {args.seeds}")
    for seed in range(args.seeds):
        bp = train(Run(task, make_estimator("backprop"), seed, task.lr, cpu, steps), data)
        runs["backprop"].append(bp)
        budget = bp.rows[-1]["seconds"]
        budgets.append(budget)
        capped = dataclasses.replace(task, seconds=budget, steps=100 * steps)
        cvs = methods[1:] if seed % 2 == 0 else list(reversed(methods[1:]))
        for spec in cvs:
            runs[spec].append(train(Run(capped, make_estimator(spec), seed, task.lr, cpu), data))
        print(f"seed {seed}: budget {budget:.1f} s")

    report(runs, budgets, steps)


def report(runs: dict[str, list[TrainResult]], budgets: list[float], steps: int) -> None:
    """Print the four tables and the plain verdict per fraction and target."""
    methods = list(runs)
    seeds = len(budgets)
    curve = []
    for spec in methods:
        for k in range(0, steps + 1, 100):
            rows = [r for res in runs[spec] for r in res.rows if r["step"] == k]
            if len(rows) == seeds:
                curve.append([spec, k, _mean_se([r["seconds"] for r in rows]),
                              _mean_se([r["val_acc"] for r in rows])])  # fmt: skip
    print("\nValidation accuracy by step (first steps of each run):")
    print(tabulate(curve, headers=["method", "step", "seconds", "val_acc"]))

    at_budget = []
    for spec in methods:
        pairs = list(zip(runs[spec], budgets, strict=True))
        at_budget.append(
            [spec] + [_mean_se([_acc_at(r, b * t) for r, t in pairs]) for b in BUDGETS]
        )
    print(f"\nValidation accuracy at fractions of the time budget (backprop's {steps} steps; "
          f"budget {_mean_se(budgets)} s):")  # fmt: skip
    print(tabulate(at_budget, headers=["method"] + [f"{b:g} x budget" for b in BUDGETS]))

    reach: list[list[Any]] = []
    step_ms: dict[str, float] = {}
    for spec in methods:
        row: list[Any] = [spec]
        for target in TARGETS:
            times = [_time_to(res, target) for res in runs[spec]]
            hit = [t for t in times if t is not None]
            row += [_mean_se(hit), f"{len(hit)}/{len(times)}"]
        step_ms[spec] = 1e3 * statistics.mean(r.rows[-1]["seconds"] / r.rows[-1]["step"]
                                              for r in runs[spec])  # fmt: skip
        reach.append([*row, step_ms[spec], max(r.rows[-1]["step"] for r in runs[spec])])
    headers = ["method"]
    for target in TARGETS:
        headers += [f"s to {target:g}", "reached"]
    print("\nTime to reach a validation accuracy (mean over the seeds that reached it):")
    print(tabulate(reach, headers=[*headers, "ms/step", "steps"], floatfmt=".1f"))

    align = []
    for spec in methods[1:]:
        fraction = make_estimator(spec).config["fraction"]
        kappa = step_ms[spec] / step_ms["backprop"]
        align.append([spec, _mean_se([_diagnostic(r, "alignment") for r in runs[spec]]),
                      _mean_se([_diagnostic(r, "residual") for r in runs[spec]]), kappa,
                      break_even_alignment(kappa, fraction),
                      _diagnostic(runs[spec][0], "break_even")])  # fmt: skip
    headers = ["method", "alignment", "residual", "time ratio", "break-even (time)",
               "break-even (nominal)"]  # fmt: skip
    print("\nAlignment cos(g_pred(C), g_true(C)) over training vs break-even:")
    print(tabulate(align, headers=headers, floatfmt=".3f"))

    print()
    for spec in methods[1:]:
        for target in TARGETS:
            pairs = zip(runs[spec], runs["backprop"], strict=True)
            wins = sum(_sooner(_time_to(ours, target), _time_to(bp, target)) for ours, bp in pairs)
            print(f"{spec} reaches {target:g} sooner than backprop in {wins}/{seeds} seeds")


def _sooner(ours: float | None, theirs: float | None) -> bool:
    return ours is not None and (theirs is None or ours < theirs)


if __name__ == "__main__":
    main()
