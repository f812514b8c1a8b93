"""sparse-vjp: more epochs for cheaper epochs? Time-, FLOPs- and epochs-to-target vs keep.

    python -m benchmarks.sparse_vjp_tradeoff [--tasks mlp-mnist1d vit-digits]
        [--keeps 1 0.5 0.25 0.1] [--seeds 3] [--sketch uniform] [--axis row] [--threads N]

Each run is the real training loop (`runners.train.train`) at the task's default rate and
batch size. keep 1 is plain backprop (a diagonal sketch that keeps everything is the exact
gradient, and backprop is its fastest form). Budgets: the task's own step budget for keep >=
0.5 and twice that below 0.5, so that slower-converging low keeps get a chance. Runs are
interleaved (for each seed, every keep in turn) so that machine load drifts hit all keeps alike.

Per task and keep the table gives runs that reached the task's target validation accuracy
(reached/total), then over those runs the median [min-max] epochs, training seconds (evaluation
excluded) and FLOPs (`FlopCounterMode`, per step) to the first evaluation at or above target,
the median seconds per step relative to keep 1, and the median final validation accuracy.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch
from tabulate import tabulate

from benchmarks.threads import add_threads_flag, apply_threads
from estimators import make_estimator
from runners.train import Run, train
from tasks import Task, get_task

CPU = torch.device("cpu")


def spec_for(keep: float, sketch: str, axis: str) -> str:
    """The estimator run at a keep fraction (keep 1: backprop)."""
    return "backprop" if keep == 1 else f"sparse-vjp:sketch={sketch},axis={axis},keep={keep:g}"


def budget(task: Task, keep: float) -> int:
    """Training steps: the task's budget, doubled for keep < 0.5."""
    return task.steps * (2 if keep < 0.5 else 1)


def run_once(task: Task, data: Any, spec: str, seed: int, steps: int) -> dict[str, Any]:
    """One training run, summarised: when it first reached the target, and its pace."""
    rows = train(Run(task, make_estimator(spec), seed, task.lr, CPU, steps), data).rows
    done = [r for r in rows if r["step"] > 0]
    hit = next((r for r in done if r["val_acc"] >= task.target_acc), None)
    per_epoch = task.batch_size / len(data.x_train)
    return {
        "reached": hit is not None,
        "epochs": hit["step"] * per_epoch if hit else None,
        "seconds": hit["seconds"] if hit else None,
        "flops": hit["flops"] if hit else None,
        "step_seconds": done[-1]["seconds"] / done[-1]["step"],
        "final_acc": done[-1]["val_acc"],
    }


def _spread(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def table(task: Task, runs: dict[float, list[dict[str, Any]]]) -> list[list[Any]]:
    """One row per keep fraction."""
    dense_step = statistics.median(r["step_seconds"] for r in runs[1.0]) if 1.0 in runs else None
    rows = []
    for keep, results in runs.items():
        hits = [r for r in results if r["reached"]]
        step = statistics.median(r["step_seconds"] for r in results)
        rows.append([
            keep, budget(task, keep), f"{len(hits)}/{len(results)}",
            _spread([r["epochs"] for r in hits], ".1f"),
            _spread([r["seconds"] for r in hits], ".1f"),
            _spread([r["flops"] / 1e9 for r in hits], ".1f"),
            step / dense_step if dense_step else float("nan"),
            statistics.median(r["final_acc"] for r in results),
        ])  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sparse_vjp_tradeoff", description=__doc__
    )
    parser.add_argument("--tasks", nargs="+", default=["mlp-mnist1d", "vit-digits"])
    parser.add_argument("--keeps", nargs="+", type=float, default=[1.0, 0.5, 0.25, 0.1])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sketch", default="uniform")
    parser.add_argument("--axis", default="row")
    add_threads_flag(parser)
    args = parser.parse_args(argv)
    threads = apply_threads(args)
    print(
        f"CPU, {threads} threads; sketch={args.sketch}, axis={args.axis}; seeds 0..{args.seeds - 1}"
    )
    headers = ["keep", "budget (steps)", "reached", "epochs to target", "seconds to target",
               "GFLOPs to target", "s/step vs keep 1", "final val acc"]  # fmt: skip
    for name in args.tasks:
        task = get_task(name)
        data = task.load()
        runs: dict[float, list[dict[str, Any]]] = {k: [] for k in args.keeps}
        for seed in range(args.seeds):
            for keep in args.keeps:
                spec = spec_for(keep, args.sketch, args.axis)
                runs[keep].append(run_once(task, data, spec, seed, budget(task, keep)))
        print(f"\n{task.name}: target val acc {task.target_acc}, batch {task.batch_size}, "
              f"lr {task.lr:g}")  # fmt: skip
        print(tabulate(table(task, runs), headers=headers, floatfmt=".3g"))


if __name__ == "__main__":
    main()
