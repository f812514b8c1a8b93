"""Sweep estimators x tasks x seeds and write a tidy results folder.

    python -m runners.sweep                 # preset `quick`: every estimator, the embedded tasks
    python -m runners.sweep --list          # estimators (with parameters), tasks, presets
    python -m runners.sweep --tasks mlp-mnist1d --estimators backprop --seeds 3 --out results/x

Bad input (unknown names, out-of-range parameters, a missing data root, an occupied results
folder) prints one line naming the problem and the valid choices and exits with status 2.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path
from typing import Any

import numpy
import torch
import torchvision
from tqdm import tqdm

from estimators import EstimatorError, make_estimator
from runners import results
from runners.cells import MEASUREMENTS, Cell, Context, LocalExecutor
from runners.device import DeviceError, describe, resolve_device, use_available_cores
from runners.listing import listing
from runners.presets import PresetError, load_preset
from runners.summary import summary_table
from tasks import Task, TaskError, get_task
from tasks.data import DataSource

USER_ERRORS = (EstimatorError, TaskError, PresetError, DeviceError, results.ResultsError)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runners.sweep",
        description="Sweep gradient estimators over tasks and seeds.",
    )
    parser.add_argument("--list", action="store_true", help="list estimators, tasks and presets")
    parser.add_argument("--preset", default="quick", help="named configuration (default: quick)")
    parser.add_argument("--tasks", nargs="+", help="task names (default: the preset's)")
    parser.add_argument(
        "--estimators",
        nargs="+",
        help="estimator specs: NAME, NAME:key=value,..., or package.module:Class[:key=value]",
    )
    parser.add_argument("--seeds", type=int, help="number of seeds, 0..N-1 (default: preset's)")
    parser.add_argument("--measure", help=f"comma-separated, from: {', '.join(MEASUREMENTS)}")
    parser.add_argument("--steps", type=int, help="override every task's step budget (smoke runs)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--out", type=Path, help="results folder (default: results/<preset>)")
    parser.add_argument("--data-root", type=Path, help="folder holding MNIST / CIFAR-10 files")
    parser.add_argument("--download", action="store_true", help="download missing data sets")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace) -> tuple[dict[str, Any], list[Cell]]:
    """Resolve the preset and flags into a configuration and its cells (validating all names)."""
    preset = load_preset(args.preset)
    tasks = [get_task(name).name for name in (args.tasks or preset.tasks)]
    specs = list(
        dict.fromkeys(make_estimator(s).spec for s in args.estimators or preset.estimators)
    )
    seeds = preset.seeds if args.seeds is None else args.seeds
    if seeds < 1:
        raise TaskError(f"--seeds must be >= 1, got {seeds}")
    if args.steps is not None and args.steps < 1:
        raise TaskError(f"--steps must be >= 1, got {args.steps}")
    measure = args.measure.split(",") if args.measure else list(preset.measure)
    for m in measure:
        if m not in MEASUREMENTS:
            raise TaskError(f"unknown measurement {m!r}; valid: {', '.join(MEASUREMENTS)}")
    config = {
        "preset": preset.name,
        "tasks": tasks,
        "estimators": specs,
        "seeds": seeds,
        "measure": measure,
        "steps": args.steps,
        "data_root": str(args.data_root) if args.data_root else None,
        "download": args.download,
    }
    cells = [Cell(t, e, s, m) for m in measure for t in tasks for e in specs for s in range(seeds)]
    return config, cells


def versions(device: torch.device) -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "device": describe(device),
    }


def task_record(task: Task, steps: int | None) -> dict[str, Any]:
    """What the manifest says of a task: size, data, target and the budget actually used."""
    return {
        "n_params": task.n_params,
        "dataset": task.dataset,
        "target_acc": task.target_acc,
        "steps": steps or task.steps,
        "batch_size": task.batch_size,
        "lr": task.lr,
    }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def sweep(args: argparse.Namespace) -> int:
    if args.list:
        print(listing())
        return 0
    config, cells = plan(args)
    device = resolve_device(args.device)
    threads = use_available_cores()
    out: Path = args.out or Path("results") / config["preset"]
    results.check_new(out)
    ctx = Context(device, DataSource(args.data_root, args.download), args.steps)
    for name in config["tasks"]:
        task = get_task(name)
        ctx.data(task.dataset, lambda task=task: task.load(ctx.source))
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "config": {**config, "device": str(device), "threads": threads},
        "versions": versions(device),
        "started": _now(),
        "finished": None,
        "tasks": {name: task_record(get_task(name), args.steps) for name in config["tasks"]},
        "cells": {cell.key: {"status": "pending"} for cell in cells},
    }
    results.write_manifest(out, manifest)
    total = sum(args.steps or get_task(c.task).steps for c in cells)
    with tqdm(total=total, unit="step", dynamic_ncols=True, mininterval=0.5) as bar:
        ctx.on_step = lambda _: bar.update(1)
        done = 0
        for cell, outcome in LocalExecutor().map(cells, ctx, lambda c: bar.set_description(c.key)):
            for file, rows in outcome.rows.items():
                results.append_rows(out, file, rows)
            entry = {"status": outcome.status, "seconds": round(outcome.seconds, 3)}
            manifest["cells"][cell.key] = entry | (
                {"error": outcome.error} if outcome.error else {}
            )
            results.write_manifest(out, manifest)
            if outcome.error:
                tqdm.write(f"cell {cell.key} failed: {outcome.error}")
            done += args.steps or get_task(cell.task).steps
            bar.n = done
            bar.refresh()
    manifest["finished"] = _now()
    results.write_manifest(out, manifest)
    print(summary_table(out))
    failed = sum(c["status"] == "failed" for c in manifest["cells"].values())
    print(f"\nresults: {out}  ({len(cells) - failed} cells done, {failed} failed)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return sweep(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
