"""The closing table a sweep prints: one row per task and estimator setting."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from tasks import get_task


def time_to_target(runs: pd.DataFrame, target: float) -> pd.Series:
    """Training seconds until val_acc first reached `target`, per (seed, lr); NaN if never."""
    reached = runs[runs["val_acc"] >= target]
    first = reached.groupby(["seed", "lr"])["seconds"].min()
    return first.reindex(runs.groupby(["seed", "lr"]).size().index)


def summary_table(folder: Path) -> str:
    """Median final and best accuracy, time to target and outcomes, from `train.csv`."""
    path = folder / "train.csv"
    if not path.exists():
        return "no training rows were written"
    df = pd.read_csv(path, keep_default_na=False, na_values=["nan"])
    rows = []
    for (task, estimator, params), runs in df.groupby(["task", "estimator", "params"], sort=False):
        target = get_task(task).target_acc
        finals = runs.groupby(["seed", "lr"]).tail(1)
        ttt = time_to_target(runs, target)
        rows.append([
            task,
            estimator if params == "-" else f"{estimator}:{params}",
            finals["val_acc"].median(),
            runs.groupby(["seed", "lr"])["val_acc"].max().median(),
            target,
            f"{ttt.median():.1f}" if ttt.notna().any() else "-",
            f"{int(ttt.notna().sum())}/{len(ttt)}",
            ", ".join(f"{s} {n}" for s, n in finals["status"].value_counts().items()),
        ])  # fmt: skip
    headers = ["task", "estimator", "final acc", "best acc", "target", "s to target", "reached",
               "runs"]  # fmt: skip
    return tabulate(rows, headers=headers, floatfmt=".3f")
