"""Sweep estimators x tasks x seeds and write a tidy results folder (docs/protocol.md).

    python -m runners.sweep                 # preset `quick`: every estimator, the embedded tasks
    python -m runners.sweep --list          # estimators (with parameters), tasks, presets
    python -m runners.sweep --preset full --out results/full
    python -m runners.sweep --resume --out results/full      # after an interruption

Bad input (a malformed flag, unknown names, out-of-range parameters, a broken preset or outside
estimator, missing or malformed data, an occupied, uncreatable or corrupt results folder) prints
one line naming the problem (and the valid choices) and exits with status 2; Ctrl-C or SIGTERM
keeps the finished cells and prints the `--resume` command (exit 130 / 143). `--resume` checks
the tables against the manifest's row counts and runs again exactly the cells whose rows are
missing, extra or changed (`measurements.store.repair`), saying so in one line.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, astuple, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy
import pandas as pd
import torch
from tqdm import tqdm

from estimators import EstimatorError, make_estimator, registry
from measurements import store as results
from measurements.budget import budget
from measurements.context import Context
from measurements.device import (
    DeviceError,
    describe,
    resolve_device,
    set_precision,
    use_available_cores,
)
from measurements.scaling import sized_tasks
from measurements.schema import best_rate
from measurements.studies import get_study
from measurements.study import StudyError, study_name
from runners import executors
from runners.cells import MEASUREMENTS, TUNE_SEED, Cell, Executor, LocalExecutor
from runners.listing import listing
from runners.presets import Group, PresetError, load_preset
from runners.progress import Progress
from tasks import DataMissing, Task, TaskError, get_task
from tasks.boundary import Interrupted, Parser, run_command
from tasks.data import DataSource, Splits

USER_ERRORS = (
    EstimatorError, TaskError, PresetError, DeviceError, results.ResultsError, StudyError,
)  # fmt: skip
GROUP_FIELDS = ("tasks", "estimators", "measure", "draws", "optional", "seeds")
SELECTION = ("preset", "tasks", "estimators", "seeds", "measure", "steps", "seconds", "draws")


class Planned(NamedTuple):
    """A task and estimator spec's measurements, quality draws (None: the sweep's) and seed
    count by measurement."""

    task: str
    spec: str
    measure: tuple[str, ...]
    draws: int | None
    seeds: dict[str, int]


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
    seconds: float | dict[str, float] | None  # every task's cap, or by task name
    data_root: str | None
    download: bool
    scaling: dict[str, dict[str, list[object]]] | None = None  # the scaling families
    also: tuple[Group, ...] = ()  # runs beyond the cross (`runners.presets.Preset.also`)
    studies: tuple[str, ...] = ()  # study specs run into the folder after the cells

    def runs(self) -> list[Planned]:
        """What runs of each task and estimator spec: the cross's, then each `also` group's; a
        pair named twice is run once, for the measurements of both, each at the larger seed
        count of the groups measuring it, its quality cells at the draws of the first group that
        measures quality."""
        groups = [Group(self.tasks, self.estimators, self.measure), *self.also]
        found: dict[tuple[str, str], Planned] = {}
        for g in groups:
            for pair in ((task, spec) for task in g.tasks for spec in g.estimators):
                had = found.get(pair, Planned(*pair, (), None, {}))
                first = "quality" in g.measure and "quality" not in had.measure
                added = tuple(m for m in g.measure if m not in had.measure and m != "scaling")
                seeds = dict(had.seeds)
                for m in had.measure + added:
                    if m in g.measure:
                        seeds[m] = max(seeds.get(m, 0), g.seeds or self.seeds)
                found[pair] = Planned(*pair, had.measure + added, g.draws if first else had.draws,
                                      seeds)  # fmt: skip
        return list(found.values())

    def all_tasks(self) -> tuple[str, ...]:
        """Every task a cell runs on: the cross's, then the `also` groups'."""
        return tuple(dict.fromkeys([*self.tasks, *(t for g in self.also for t in g.tasks)]))

    def validated(self) -> SweepConfig:
        """The same configuration with canonical names, or a clear error for a bad one."""
        steps = self.steps.values() if isinstance(self.steps, dict) else [self.steps]
        caps = self.seconds.values() if isinstance(self.seconds, dict) else [self.seconds]
        for value, flag, least in (
            (self.seeds, "--seeds", 1),
            (self.draws, "--draws", 2),
            *((s, "--steps", 1) for s in steps),
            *((c, "--seconds", 0) for c in caps),
        ):
            if value is not None and value < least:
                raise TaskError(f"{flag} must be >= {least}, got {value}")
        for m in self.measure:
            if m not in MEASUREMENTS:
                raise TaskError(f"unknown measurement {m!r}; valid: {', '.join(MEASUREMENTS)}")
        if "scaling" in self.measure:
            if not self.scaling:
                raise TaskError("the scaling measurement needs a [scaling] table in the preset")
            sized_tasks(self.scaling)  # a clear error for a bad table before anything runs
        also = tuple(_group(g) for g in self.also)
        for spec in self.studies:
            name, options = study_name(spec)
            get_study(name).configure(options)  # a clear error for a bad spec before anything runs
        cross = _group(self)
        return SweepConfig(**{**asdict(self), "tasks": cross.tasks, "estimators": cross.estimators,
                              "measure": cross.measure, "also": also,
                              "studies": tuple(self.studies)})  # fmt: skip


def _group(g: Group | SweepConfig | Mapping[str, Any]) -> Group:
    """The group with canonical task names and estimator specs (a manifest stores groups as
    objects of lists)."""
    fields: Mapping[str, Any] = (
        g if isinstance(g, Mapping) else {f: getattr(g, f, None) for f in GROUP_FIELDS}
    )
    tasks = tuple(dict.fromkeys(get_task(t).name for t in fields["tasks"]))
    specs = tuple(dict.fromkeys(make_estimator(s).spec for s in fields["estimators"]))
    return Group(tasks, specs, tuple(fields["measure"]), fields.get("draws"),
                 bool(fields.get("optional", False)), fields.get("seeds"))  # fmt: skip


def parser() -> Parser:
    """The command line (`--debug` included; errors are one line)."""
    parser = Parser(
        prog="python -m runners.sweep",
        description="Sweep gradient estimators over tasks and seeds (see docs/protocol.md).",
    )
    add = parser.add_argument
    add("--list", action="store_true", help="list estimators, tasks and presets, then exit")
    add("--preset", help="named configuration or a FILE.toml of the same form (default: quick)")
    add("--tasks", nargs="+", help="task names, optionally with model options (NAME:width=512)")
    add("--estimators", nargs="+",
        help="NAME, NAME:key=value,..., or module:Class[:key=value,...] (an estimator class "
             "importable from the current directory)")  # fmt: skip
    add("--seeds", type=int, help="evaluation seeds 0..N-1 (default: the preset's)")
    add("--measure", help=f"comma-separated subset of {','.join(MEASUREMENTS)}")
    add("--draws", type=int, help="estimates drawn per checkpoint for quality (default: preset's)")
    add("--steps", type=int, help="step budget for every task, replacing each task's own")
    add(
        "--seconds",
        type=float,
        help="wall-clock cap on each training run in seconds, 0 for none (default: preset's)",
    )
    add("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    add("--tf32", action="store_true", help="allow TensorFloat-32 in CUDA matmuls and convolutions")
    add("--out", type=Path, help="results folder (default: results/<preset>)")
    add("--data-root", type=Path, help="folder holding MNIST / Fashion-MNIST / CIFAR-10")
    add("--download", action="store_true", help="download missing data sets into --data-root")
    add("--resume", action="store_true", help="finish the sweep in --out, skipping done cells")
    add("--no-reports", action="store_true", help="do not build reports/<name>/ at the end")
    executors.add_flags(parser)
    return parser


def resolve(args: argparse.Namespace) -> SweepConfig:
    """The preset overridden by the flags given."""
    preset = load_preset(args.preset or "quick")
    chosen = bool(args.tasks or args.estimators or args.measure)  # the preset's extras go
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
        scaling=preset.scaling,
        also=() if chosen else at_hand(preset.also, DataSource(args.data_root, args.download)),
        studies=() if chosen else preset.studies,
    ).validated()


def at_hand(groups: tuple[Group, ...], source: DataSource) -> tuple[Group, ...]:
    """The groups with each optional group's tasks whose data sets are absent left out (a
    group left with none is dropped), each left out task said in one line."""
    kept = []
    for g in groups:
        tasks = g.tasks
        if g.optional:
            absent = [t for t in g.tasks if _absent(t, source)]
            tasks = tuple(t for t in g.tasks if t not in absent)
            if absent:
                print(f"left out (data absent; an optional [[also]] group): {', '.join(absent)}")
        if tasks:
            kept.append(replace(g, tasks=tasks))
    return tuple(kept)


def _absent(task: str, source: DataSource) -> bool:
    """Whether `task`'s data set is absent from `source` (unreadable data is still an error)."""
    try:
        get_task(task).load(source)
    except DataMissing:
        return True
    return False


def first_stage(config: SweepConfig) -> list[Cell]:
    """Cells that depend on nothing: quality, cost, scaling, (when tuning) the rate grid, and
    the studies last."""
    cells = []
    for task, spec, measure, draws, seeds in config.runs():
        if "quality" in measure:
            cells += [Cell(task, spec, s, "quality", draws=draws) for s in range(seeds["quality"])]
        if "cost" in measure:
            cells.append(Cell(task, spec, 0, "cost"))
        if "train" in measure and config.tune:
            cells += [Cell(task, spec, TUNE_SEED, "tune", lr) for lr in get_task(task).lr_grid]
    if "scaling" in config.measure and config.scaling:
        for task, axis in sized_tasks(config.scaling):
            cells += [Cell(task, spec, 0, "scaling", axis=axis) for spec in config.estimators]
    return cells + [Cell("-", spec, 0, "study") for spec in config.studies]


def second_stage(config: SweepConfig, rates: dict[tuple[str, str], float | None]) -> list[Cell]:
    """Training cells at each estimator's chosen rate."""
    return [
        Cell(task, spec, s, "train", rates.get((task, spec)))
        for task, spec, measure, _, seeds in config.runs()
        if "train" in measure
        for s in range(seeds["train"])
    ]


def chosen_rates(config: SweepConfig, out: Path) -> dict[tuple[str, str], float | None]:
    """Per task and estimator, the tuning grid's best rate (from `tuning.csv`)."""
    if not config.tune or not (out / "tuning.csv").exists():
        return {}
    tuning = pd.read_csv(out / "tuning.csv", keep_default_na=False, na_values=["nan"])
    rates: dict[tuple[str, str], float | None] = {}
    for task, spec, measure, _, _ in config.runs():
        if "train" in measure:
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
        "torchvision": importlib.metadata.version("torchvision"),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": describe(device),
        "threads": threads,
    }


def task_record(task: Task, config: SweepConfig, data: Splits) -> dict[str, Any]:
    """What the manifest says of a task: size, data (its training and validation examples),
    target and the budget actually used."""
    steps, seconds = astuple(budget(task, config.steps, config.seconds))
    return {
        "n_params": task.n_params,
        "dataset": task.dataset,
        "n_train": len(data.x_train),
        "n_val": len(data.x_val),
        "target_acc": task.target_acc,
        "target_note": task.target_note,
        "steps": steps,
        "seconds": seconds,
        "batch_size": task.batch_size,
        "lr": task.lr,
    }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def outside_imports(config: SweepConfig) -> dict[str, str]:
    """Estimators not shipped with the package, by name: the import path that loads each."""
    classes = (registry.parse_spec(spec)[0] for spec in config.estimators)
    shipped = set(registry.shipped_names())
    return {cls.name: registry.import_path(cls) for cls in classes if cls.name not in shipped}


def reimport(imports: object, out: Path) -> None:
    """Load the outside estimators a resumed sweep used (`manifest["imports"]`)."""
    if not isinstance(imports, dict):
        raise results.ResultsError(f"{out}/manifest.json is corrupt: 'imports' is not an object")
    for name, path in imports.items():
        if name not in registry.names():
            try:
                registry.load_path(str(path))
            except EstimatorError as exc:
                raise EstimatorError(f"cannot resume {out}: {exc}") from None


def _open(
    args: argparse.Namespace,
) -> tuple[SweepConfig, Path, dict[str, Any], set[str], results.Audit | None]:
    """Configuration, folder, manifest, done cells and (resuming) how the tables agree with the
    manifest: a new sweep's, or the one resumed. Reads only; nothing is written yet."""
    if args.resume:
        given = [f"--{f.replace('_', '-')}" for f in SELECTION if getattr(args, f) is not None]
        if given:
            raise TaskError(f"--resume takes its configuration from the manifest; drop {given[0]}")
        out = args.out or Path("results") / "quick"
        manifest, found = results.open_existing(out)
        reimport(manifest.get("imports", {}), out)
        try:
            stored: dict[str, Any] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in manifest["config"].items()
            }
            config = SweepConfig(**stored).validated()
        except TypeError as exc:
            raise results.ResultsError(f"{out}/manifest.json is corrupt: {exc}") from None
        done = {k for k, c in manifest["cells"].items() if c["status"] == "done"} - found.damaged
        return config, out, manifest, done, found
    config = resolve(args)
    out = args.out or Path("results") / config.preset
    results.check_new(out)
    manifest = {"config": asdict(config), "imports": outside_imports(config), "cells": {}}
    return config, out, manifest, set(), None


def resume_command(out: Path, args: argparse.Namespace) -> str:
    """The command line that finishes the sweep in `out`."""
    device = [] if args.device == "auto" else ["--device", args.device]
    device += ["--tf32"] if args.tf32 else []
    return " ".join(["python -m runners.sweep --resume --out", shlex.quote(str(out)), *device])


def sweep(args: argparse.Namespace) -> int:
    if args.list:
        print(listing())
        return 0
    config, out, manifest, done, found = _open(args)
    args = executors.with_preset(args, None if args.resume else load_preset(args.preset or "quick"))
    device = resolve_device(executors.driver_device(args))
    threads = use_available_cores()
    precision = set_precision(args.tf32)  # before anything is computed; workers inherit it
    if args.resume and manifest.get("environment", {}).get("tf32", False) != args.tf32:
        raise TaskError(f"{out} was measured with{'out' * args.tf32} --tf32; resume it so")
    root = Path(config.data_root) if config.data_root else None
    ctx = Context(device, DataSource(root, config.download), out, config.steps, config.draws,
                  config.seconds)  # fmt: skip
    tasks = {name: get_task(name) for name in config.all_tasks()}
    for task in tasks.values():
        ctx.data(task)  # a missing data set stops the sweep here, before anything is written
    executor = executors.from_args(args, out, manifest.get("imports", {}))
    results.make_folder(out)
    try:
        if found is not None and not found.sound:
            print(results.repair(out, manifest, found), file=sys.stderr)
        manifest.update(
            environment=environment(device, threads) | precision | executors.describe(executor),
            started=manifest.get("started") or _now(),
            finished=None,
            tasks={n: task_record(t, config, ctx.data(t)) for n, t in tasks.items()},
        )
        training = _run_all(config, ctx, out, manifest, done, executor)
    except Interrupted as exc:
        raise Interrupted(
            exc.signum,
            f"finished cells are kept in {out}\nfinish with: {resume_command(out, args)}",
        ) from None
    failed = sum(c["status"] == "failed" for c in manifest["cells"].values())
    report = [sys.executable, "-m", "reports", "--results", str(out), "--summary"]
    if not args.no_reports:  # the report is built by its own process: runners never import it
        sys.stdout.flush()
        if subprocess.run(report).returncode != 0:
            raise results.ResultsError(f"the report of {out} could not be built (see above)")
    print(f"\nresults: {out}  ({len(manifest['cells']) - failed} cells done, {failed} failed;"
          f" {training} training runs)")  # fmt: skip
    if args.no_reports:
        print(f"table and report: python -m reports --results {out} --summary")
    return 0


def _run_all(
    config: SweepConfig,
    ctx: Context,
    out: Path,
    manifest: dict[str, Any],
    done: set[str],
    executor: Executor | None = None,
) -> int:
    """Run every cell not done, in two stages (training waits for the tuned rates); returns the
    number of training runs."""
    stage1 = first_stage(config)
    training = second_stage(config, {})  # the rates are not known yet; the cells are
    for cell in stage1 + training:
        manifest["cells"].setdefault(cell.key, {"status": "pending"})
    results.write_manifest(out, manifest)
    todo = [c for c in stage1 if c.key not in done]
    with Progress([c for c in todo + training if c.key not in done], ctx) as progress:
        ctx.on_step = progress.step
        _run(todo, ctx, out, manifest, progress, executor)
        rates = chosen_rates(config, out)
        manifest["chosen_lr"] = {f"{t}|{s}": lr for (t, s), lr in rates.items()}
        second = [c for c in second_stage(config, rates) if c.key not in done]
        _run(second, ctx, out, manifest, progress, executor)
    manifest["finished"] = _now()
    results.write_manifest(out, manifest)
    return len(training)


def _run(
    cells: list[Cell],
    ctx: Context,
    out: Path,
    manifest: dict[str, Any],
    progress: Progress,
    executor: Executor | None = None,
) -> None:
    """Run cells, appending each one's rows and status as soon as it finishes."""
    for cell, outcome in (executor or LocalExecutor()).map(cells, ctx, progress.start):
        written = {  # a study's tables are written whole (a re-run replaces them)
            file: results.append_rows(out, file, rows, replace=cell.measure == "study")
            for file, rows in outcome.rows.items()
            if rows
        }
        entry: dict[str, Any] = {"status": outcome.status, "seconds": round(outcome.seconds, 3)}
        entry["runner"] = outcome.runner  # local (alone), pool:N (shared), slurm:JOB
        if cell.lr is not None:
            entry["lr"] = cell.lr
        entry |= {"error": outcome.error} if outcome.error else {"rows": written}
        manifest["cells"][cell.key] = entry  # written last: a cell is done once its rows are in
        results.write_manifest(out, manifest)
        if outcome.error:
            tqdm.write(f"cell {cell.key} failed: {outcome.error}")
        progress.finish(cell, outcome.seconds)


def main(argv: list[str] | None = None) -> int:
    return run_command(parser(), sweep, USER_ERRORS, argv)


if __name__ == "__main__":
    sys.exit(main())
