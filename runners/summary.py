"""The closing table a sweep prints: one row per task and estimator setting."""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from runners.targets import final_accuracy, to_target
from tasks import get_task

KEYS = ["task", "estimator", "params"]


def _read(folder: Path, file: str) -> pd.DataFrame | None:
    path = folder / file
    return pd.read_csv(path, keep_default_na=False, na_values=["nan"]) if path.exists() else None


def summary_table(folder: Path) -> str:
    """Training outcome, end-of-training gradient quality and cost ratios, side by side."""
    table: dict[tuple[str, str, str], dict[str, object]] = {}
    train = _read(folder, "train.csv")
    if train is not None:
        for key, runs in train.groupby(KEYS, sort=False):
            target = get_task(key[0]).target_acc
            per_seed = [rows.to_dict("records") for _, rows in runs.groupby("seed")]
            reached = [to_target(r, target)["seconds"] for r in per_seed]  # misses are inf
            hits = [t for t in reached if t != float("inf")]
            table.setdefault(key, {}).update({
                "final acc": statistics.median(final_accuracy(r) for r in per_seed),
                "target": target,
                "s to target": statistics.median(reached),
                "reached": f"{len(hits)}/{len(per_seed)}",
            })  # fmt: skip
    quality = _read(folder, "quality.csv")
    if quality is not None:
        total = quality[quality["layer"] == "total"]
        last = total[total["checkpoint"] == total.groupby(KEYS)["checkpoint"].transform("max")]
        for key, rows in last.groupby(KEYS, sort=False):
            table.setdefault(key, {}).update({
                "cosine": rows["cosine"].median(),
                "rel MSE": rows["rel_mse"].median(),
                "work MSE": rows["work_mse"].median(),
            })  # fmt: skip
    cost = _read(folder, "cost.csv")
    if cost is not None:
        for key, rows in cost.groupby(KEYS, sort=False):
            table.setdefault(key, {}).update({
                "FLOPs x": rows["flop_ratio"].iloc[0],
                "time x": rows["time_ratio"].iloc[0],
                "memory x": rows["memory_ratio"].iloc[0],
            })  # fmt: skip
    if not table:
        return "no results were written"
    columns = ["final acc", "target", "s to target", "reached", "cosine", "rel MSE", "work MSE",
               "FLOPs x", "time x", "memory x"]  # fmt: skip
    present = [c for c in columns if any(c in v for v in table.values())]
    rows = [
        [task, est if params == "-" else f"{est}:{params}", *(v.get(c, "") for c in present)]
        for (task, est, params), v in table.items()
    ]
    return tabulate(rows, headers=["task", "estimator", *present], floatfmt=".3g")
