"""Merge results folders measured under the same settings into one.

    python -m runners.merge OUT IN1 IN2 ...

A sweep split across machines or clusters (by estimators, tasks or seeds), or a user's own
estimator run later beside the shipped ones' results, becomes one folder that the reports read
as one sweep. The inputs must agree on what makes their numbers comparable: each task's record
(size, data, target, step budget and wall-clock cap, batch size, rate), the draws per quality
checkpoint, tuning, the scaling families, the device kind (cpu or cuda), the TF32 policy and the
tables' schema (`measurements.schema`); the estimators, tasks and seeds may differ. A cell
finished or failed in two inputs is refused unless its record (status and rows' tally) is the
same in both. Every input is first audited like a resume (`measurements.store.open_existing`):
a folder with cut-off or unfinished rows is refused (resume it first). Nothing in the inputs is
changed; OUT must be new. Bad input prints one line naming the difference and exits with 2.

The merged manifest lists every cell of the inputs (done, failed or pending), the union of
tasks, estimators and measurements, the largest seed count, and `merged`: each input's folder,
environment and times. `python -m runners.sweep --resume --out OUT` then runs what is missing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from measurements import store as results
from measurements.schema import COLUMNS, audit, read_table, row_text
from tasks.boundary import Parser, run_command

# config keys that must agree (the budgets are compared per task, from the task records)
SAME_CONFIG = ("draws", "tune", "seconds")


class MergeError(ValueError):
    """Inputs that cannot be merged."""


def _kind(manifest: dict[str, Any]) -> str:
    device = str(manifest.get("environment", {}).get("device", "cpu"))
    return device.partition(":")[0]  # cpu, cuda, or auto (Slurm tasks that chose on their node)


def _settings(manifest: dict[str, Any]) -> dict[str, Any]:
    """What must agree between merged folders, by a name that says it in the error line."""
    config = manifest["config"]
    found: dict[str, Any] = {f"config {k!r}": config.get(k) for k in SAME_CONFIG}
    found["device kind"] = _kind(manifest)
    found["TF32 policy"] = manifest.get("environment", {}).get("tf32", False)
    found["protocol"] = manifest.get("protocol")
    return found


def _compare(first: tuple[Path, dict[str, Any]], other: tuple[Path, dict[str, Any]]) -> None:
    (a, ma), (b, mb) = first, other
    for name, value in _settings(ma).items():
        if _settings(mb)[name] != value:
            raise MergeError(
                f"{b} differs from {a} in {name}: {_settings(mb)[name]!r} against {value!r}"
            )
    for task in set(ma.get("tasks", {})) & set(mb.get("tasks", {})):
        ta, tb = ma["tasks"][task], mb["tasks"][task]
        for key in sorted(set(ta) | set(tb)):
            if ta.get(key) != tb.get(key):
                raise MergeError(
                    f"{b} differs from {a} in task {task}'s {key}: "
                    f"{tb.get(key)!r} against {ta.get(key)!r}"
                )
    sa, sb = ma["config"].get("scaling"), mb["config"].get("scaling")
    uses = ("scaling" in ma["config"]["measure"]) and ("scaling" in mb["config"]["measure"])
    if uses and sa != sb:
        raise MergeError(f"{b} differs from {a} in the scaling families: {sb!r} against {sa!r}")
    for name, path in mb.get("imports", {}).items():
        if ma.get("imports", {}).get(name, path) != path:
            raise MergeError(
                f"{b} loads estimator {name} from {path}, {a} from {ma['imports'][name]}"
            )


def _union(lists: list[list[Any]]) -> list[Any]:
    return list(dict.fromkeys(x for values in lists for x in values))


def merged_config(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The inputs' configurations as one: tasks, estimators and measurements united, the most
    seeds, each task's step budget by name where the inputs' step overrides differ."""
    configs = [m["config"] for m in manifests]
    config = dict(configs[0])
    config["tasks"] = _union([c["tasks"] for c in configs])
    config["estimators"] = _union([c["estimators"] for c in configs])
    config["measure"] = _union([c["measure"] for c in configs])
    config["seeds"] = max(c["seeds"] for c in configs)
    if len({c["preset"] for c in configs}) > 1:
        config["preset"] = "merged"
    if any(c["steps"] != configs[0]["steps"] for c in configs):
        tasks = {n: t for m in manifests for n, t in m.get("tasks", {}).items()}
        config["steps"] = {n: tasks[n]["steps"] for n in config["tasks"]}
    for c in configs:
        if c.get("scaling"):
            config["scaling"] = c["scaling"]
    return config


def merge(out: Path, inputs: list[Path]) -> dict[str, Any]:
    """Write the merged folder `out`; returns its manifest. A `MergeError` or `ResultsError` (one
    line, nothing written) when the inputs cannot be merged."""
    if len(inputs) < 2:
        raise MergeError("give at least two results folders to merge")
    opened: list[tuple[Path, dict[str, Any]]] = []
    for folder in inputs:
        manifest, found = results.open_existing(folder)
        if not found.sound:
            raise MergeError(f"{folder}: {found.summary()}; finish it with --resume first")
        opened.append((folder, manifest))
    for other in opened[1:]:
        _compare(opened[0], other)
    results.check_new(out)
    cells: dict[str, dict[str, Any]] = {}
    source: dict[str, Path] = {}  # the input whose rows a cell takes
    for folder, manifest in opened:
        for key, entry in manifest["cells"].items():
            if entry["status"] == "pending":
                cells.setdefault(key, entry)
                continue
            if key in source:
                if _record(cells[key]) != _record(entry):
                    raise MergeError(
                        f"cell {key} is in both {source[key]} and {folder} with different "
                        "results; drop it from one"
                    )
                continue
            cells[key], source[key] = entry, folder
    manifests = [m for _, m in opened]
    manifest = {
        **manifests[0],
        "config": merged_config(manifests),
        "imports": {k: v for m in manifests for k, v in m.get("imports", {}).items()},
        "cells": cells,
        "tasks": {n: t for m in manifests for n, t in m.get("tasks", {}).items()},
        "chosen_lr": {k: v for m in manifests for k, v in m.get("chosen_lr", {}).items()},
        "started": min(str(m.get("started") or "") for m in manifests) or None,
        "finished": None if any(m.get("finished") is None for m in manifests) else max(
            str(m["finished"]) for m in manifests
        ),
        "merged": [
            {"folder": str(f), **{k: m.get(k) for k in ("environment", "started", "finished")}}
            for f, m in opened
        ],
    }  # fmt: skip
    results.make_folder(out)
    for file, columns in COLUMNS.items():
        rows = []
        for folder, _ in opened:
            path = folder / file
            if path.exists():
                records = read_table(path.read_text())[0][1:]
                rows += [row_text(r) for r in records if source.get(r[-1]) == folder]
        if rows:
            results.atomic_write(out / file, row_text(columns) + "".join(rows))
    for folder, _ in opened:
        for checkpoint in sorted((folder / "checkpoints").glob("*.pt")):
            target = out / "checkpoints" / checkpoint.name
            if not target.exists():  # same settings, same seed: the same trajectory
                target.parent.mkdir(exist_ok=True)
                shutil.copyfile(checkpoint, target)
    results.write_manifest(out, manifest)
    check = audit(out, manifest)
    if not check.sound:  # the inputs were sound, so this is a bug here, not bad input
        raise RuntimeError(f"the merged folder {out} does not agree with its manifest: "
                           f"{check.summary()}")  # fmt: skip
    return manifest


def _record(entry: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a cell's result: its status, rows (count and digest) or error."""
    return entry["status"], entry.get("rows"), entry.get("error")


def parser() -> Parser:
    """The command line."""
    parser = Parser(
        prog="python -m runners.merge",
        description="Merge results folders measured under the same settings into one.",
    )
    parser.add_argument("out", type=Path, help="the merged results folder (must be new)")
    parser.add_argument("inputs", type=Path, nargs="+", help="results folders to merge")
    return parser


def _main(args: argparse.Namespace) -> int:
    manifest = merge(args.out, args.inputs)
    done = sum(c["status"] == "done" for c in manifest["cells"].values())
    print(f"merged {len(args.inputs)} folders into {args.out}: {done} cells done, "
          f"{len(manifest['cells']) - done} failed or pending")  # fmt: skip
    print(f"table and report: python -m reports --results {args.out} --summary")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(parser(), _main, (MergeError, results.ResultsError), argv)


if __name__ == "__main__":
    sys.exit(main())
