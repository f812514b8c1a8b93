"""Sweep estimators x tasks x seeds and write a tidy results folder (docs/protocol.md).

    python -m runners.sweep                 # preset `quick`: every estimator, the embedded tasks
    python -m runners.sweep --list          # estimators (with parameters), tasks, presets
    python -m runners.sweep --preset full --out results/full
    python -m runners.sweep --resume --out results/full      # after an interruption

Bad input (unknown names, out-of-range parameters, a missing data root, an occupied or corrupt
results folder) prints one line naming the problem and the valid choices and exits with status 2.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import Any

import numpy
import pandas as pd
import torch
import torchvision
from tqdm import tqdm

from estimators import EstimatorError, make_estimator
from measurements import store as results
from measurements.budget import budget
from measurements.context import Context
from measurements.device import DeviceError, describe, resolve_device, use_available_cores
from measurements.schema import best_rate
from runners.cells import MEASUREMENTS, TUNE_SEED, Cell, LocalExecutor
from runners.listing import listing
from runners.presets import PresetError, load_preset
from runners.progress import Progress
from tasks import Task, TaskError, get_task
from tasks.data import DataSource

USER_ERRORS = (
    EstimatorError, TaskError, PresetError, DeviceError, results.ResultsError,
)  # fmt: skip
SELECTION = ("preset", "tasks", "estimators", "seeds", "measure", "steps", "seconds", "draws")


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep runs: the preset resolved with the flags (stored in the manifest)."""

    preset: str
    tasks: tuple[str, ...]
    estimators: tuple[str, ...]
    seeds: int
    measure: tuple[str, ...]
    draws: int
    tune: bool
    steps: int | dict[str, int] | None  # every task's, or by task name
    seconds: float | None
    data_root: str | None
    download: bool

    def validated(self) -> SweepConfig:
        """The same configuration with canonical names, or a clear error for a bad one."""
        steps = self.steps.values() if isinstance(self.steps, dict) else [self.steps]
        for value, flag, least in (
            (self.seeds, "--seeds", 1),
            (self.draws, "--draws", 2),
            *((s, "--steps", 1) for s in steps),
            (self.seconds, "--seconds", 0),
        ):
            if value is not None and value < least:
                raise TaskError(f"{flag} must be >= {least}, got {value}")
        for m in self.measure:
            if m not in MEASUREMENTS:
                raise TaskError(f"unknown measurement {m!r}; valid: {', '.join(MEASUREMENTS)}")
        tasks = tuple(dict.fromkeys(get_task(t).name for t in self.tasks))
        specs = tuple(dict.fromkeys(make_estimator(s).spec for s in self.estimators))
        return SweepConfig(**{**asdict(self), "tasks": tasks, "estimators": specs})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runners.sweep",
        description="Sweep gradient estimators over tasks and seeds (see docs/protocol.md).",
    )
    add = parser.add_argument
    add("--list", action="store_true", help="list estimators, tasks and presets, then exit")
    add("--preset", help="named configuration (default: quick)")
    add("--tasks", nargs="+", help="task names, optionally with model options (NAME:width=512)")
    add("--estimators", nargs="+",
        help="NAME, NAME:key=value,..., or package.module:Class[:key=value,...]")  # fmt: skip
    add("--seeds", type=int, help="evaluation seeds 0..N-1 (default: the preset's)")
    add("--measure", help=f"comma-separated subset of {','.join(MEASUREMENTS)}")
    add("--draws", type=int, help="estimates drawn per checkpoint for quality (default: preset's)")
    add("--steps", type=int, help="step budget for every task, replacing each task's own")
    add(
        "--seconds",
        type=float,
        help="wall-clock cap on each training run in seconds, 0 for none (default: preset's)",
    )
    add("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    add("--out", type=Path, help="results folder (default: results/<preset>)")
    add("--data-root", type=Path, help="folder holding MNIST / Fashion-MNIST / CIFAR-10")
    add("--download", action="store_true", help="download missing data sets into --data-root")
    add("--resume", action="store_true", help="finish the sweep in --out, skipping done cells")
    add("--no-reports", action="store_true", help="do not build reports/<name>/ at the end")
    return parser.parse_args(argv)


def resolve(args: argparse.Namespace) -> SweepConfig:
    """The preset overridden by the flags given."""
    preset = load_preset(args.preset or "quick")
    return SweepConfig(
        preset=preset.name,
        tasks=tuple(args.tasks or preset.tasks),
        estimators=tuple(args.estimators or preset.estimators),
        seeds=preset.seeds if args.seeds is None else args.seeds,
        measure=tuple(args.measure.split(",")) if args.measure else preset.measure,
        draws=preset.draws if args.draws is None else args.draws,
        tune=preset.tune,
        steps=args.steps if args.steps is not None else preset.steps,
        seconds=(args.seconds or None) if args.seconds is not None else preset.seconds,
        data_root=str(args.data_root) if args.data_root else None,
        download=args.download,
    ).validated()


def first_stage(config: SweepConfig) -> list[Cell]:
    """Cells that depend on nothing: quality, cost and (when tuning) the rate grid."""
    cells = []
    for task in config.tasks:
        for spec in config.estimators:
            if "quality" in config.measure:
                cells += [Cell(task, spec, s, "quality") for s in range(config.seeds)]
            if "cost" in config.measure:
                cells.append(Cell(task, spec, 0, "cost"))
            if "train" in config.measure and config.tune:
                cells += [Cell(task, spec, TUNE_SEED, "tune", lr) for lr in get_task(task).lr_grid]
    return cells


def second_stage(config: SweepConfig, rates: dict[tuple[str, str], float | None]) -> list[Cell]:
    """Training cells at each estimator's chosen rate."""
    if "train" not in config.measure:
        return []
    return [
        Cell(task, spec, s, "train", rates.get((task, spec)))
        for task in config.tasks
        for spec in config.estimators
        for s in range(config.seeds)
    ]


def chosen_rates(config: SweepConfig, out: Path) -> dict[tuple[str, str], float | None]:
    """Per task and estimator, the tuning grid's best rate (from `tuning.csv`)."""
    if not config.tune or not (out / "tuning.csv").exists():
        return {}
    tuning = pd.read_csv(out / "tuning.csv", keep_default_na=False, na_values=["nan"])
    rates: dict[tuple[str, str], float | None] = {}
    for task in config.tasks:
        for spec in config.estimators:
            runs = {
                float(str(lr)): rows.to_dict("records")
                for lr, rows in tuning[
                    tuning["cell"].str.startswith(f"tune/{task}/{spec}/lr=")
                ].groupby("lr")
            }
            rates[(task, spec)] = best_rate(runs, get_task(task).target_acc) if runs else None
    return rates


def environment(device: torch.device, threads: int) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": describe(device),
        "threads": threads,
    }


def task_record(task: Task, config: SweepConfig, n_train: int) -> dict[str, Any]:
    """What the manifest says of a task: size, data, target and the budget actually used."""
    steps, seconds = astuple(budget(task, config.steps, config.seconds))
    return {
        "n_params": task.n_params,
        "dataset": task.dataset,
        "n_train": n_train,
        "target_acc": task.target_acc,
        "target_note": task.target_note,
        "steps": steps,
        "seconds": seconds,
        "batch_size": task.batch_size,
        "lr": task.lr,
    }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _open(args: argparse.Namespace) -> tuple[SweepConfig, Path, dict[str, Any], set[str]]:
    """Configuration, folder, manifest and done cells: a new sweep's, or the one resumed."""
    if args.resume:
        given = [f"--{f.replace('_', '-')}" for f in SELECTION if getattr(args, f) is not None]
        if given:
            raise TaskError(f"--resume takes its configuration from the manifest; drop {given[0]}")
        out = args.out or Path("results") / "quick"
        manifest = results.open_existing(out)
        try:
            stored: dict[str, Any] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in manifest["config"].items()
            }
            config = SweepConfig(**stored).validated()
        except TypeError as exc:
            raise results.ResultsError(f"{out}/manifest.json is corrupt: {exc}") from None
        done = {k for k, c in manifest["cells"].items() if c.get("status") == "done"}
        return config, out, manifest, done
    config = resolve(args)
    out = args.out or Path("results") / config.preset
    results.check_new(out)
    return config, out, {"config": asdict(config), "cells": {}}, set()


def sweep(args: argparse.Namespace) -> int:
    if args.list:
        print(listing())
        return 0
    config, out, manifest, done = _open(args)
    device = resolve_device(args.device)
    threads = use_available_cores()
    root = Path(config.data_root) if config.data_root else None
    ctx = Context(device, DataSource(root, config.download), out, config.steps, config.draws,
                  config.seconds)  # fmt: skip
    tasks = {name: get_task(name) for name in config.tasks}
    for task in tasks.values():
        ctx.data(task)  # a missing data set stops the sweep here, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    results.drop_unfinished(out, done)
    manifest.update(
        environment=environment(device, threads),
        started=manifest.get("started") or _now(),
        finished=None,
        tasks={n: task_record(t, config, len(ctx.data(t).x_train)) for n, t in tasks.items()},
    )
    stage1 = first_stage(config)
    training = second_stage(config, {})  # the rates are not known yet; the cells are
    for cell in stage1 + training:
        manifest["cells"].setdefault(cell.key, {"status": "pending"})
    results.write_manifest(out, manifest)
    todo = [c for c in stage1 if c.key not in done]
    with Progress([c for c in todo + training if c.key not in done], ctx) as progress:
        ctx.on_step = progress.step
        _run(todo, ctx, out, manifest, progress)
        rates = chosen_rates(config, out)
        manifest["chosen_lr"] = {f"{t}|{s}": lr for (t, s), lr in rates.items()}
        second = [c for c in second_stage(config, rates) if c.key not in done]
        _run(second, ctx, out, manifest, progress)
    manifest["finished"] = _now()
    results.write_manifest(out, manifest)
    failed = sum(c["status"] == "failed" for c in manifest["cells"].values())
    report = [sys.executable, "-m", "reports", "--results", str(out), "--summary"]
    if not args.no_reports:  # the report is built by its own process: runners never import it
        sys.stdout.flush()
        if subprocess.run(report).returncode != 0:
            raise results.ResultsError(f"the report of {out} could not be built (see above)")
    print(f"\nresults: {out}  ({len(manifest['cells']) - failed} cells done, {failed} failed;"
          f" {len(training)} training runs)")  # fmt: skip
    if args.no_reports:
        print(f"table and report: python -m reports --results {out} --summary")
    return 0


def _run(
    cells: list[Cell], ctx: Context, out: Path, manifest: dict[str, Any], progress: Progress
) -> None:
    """Run cells, appending each one's rows and status as soon as it finishes."""
    for cell, outcome in LocalExecutor().map(cells, ctx, progress.start):
        for file, rows in outcome.rows.items():
            if rows:
                results.append_rows(out, file, rows)
        entry = {"status": outcome.status, "seconds": round(outcome.seconds, 3)}
        if cell.lr is not None:
            entry["lr"] = cell.lr
        manifest["cells"][cell.key] = entry | ({"error": outcome.error} if outcome.error else {})
        results.write_manifest(out, manifest)
        if outcome.error:
            tqdm.write(f"cell {cell.key} failed: {outcome.error}")
        progress.finish(cell, outcome.seconds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return sweep(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
