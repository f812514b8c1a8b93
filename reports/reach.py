"""Per training run: time, FLOPs and steps to the task's target; per setting: their spread.

A run that never reaches the target counts as infinite (docs/protocol.md), so a median over
seeds is infinite when at least half of the seeds never reached it.
"""

from __future__ import annotations

import math
import statistics

import pandas as pd

from measurements.schema import final_accuracy, to_target
from reports.load import KEYS, Results

RUN = [*KEYS, "seed"]


def runs_to_target(res: Results) -> pd.DataFrame:
    """One row per training run of `train.csv` (tasks with a target in the manifest).

    Columns: task, estimator, params, seed, seconds, flops, step (to target; inf if never),
    final_acc (-inf if diverged), final_loss (the last eval's mean training loss), status.
    """
    train = res.frame("train.csv")
    rows = []
    if train is not None:
        for key, run in train.groupby(RUN, sort=False):
            target = res.target(key[0])
            if target is None:
                continue
            records = run.sort_values("step").to_dict("records")
            rows.append({
                **dict(zip(RUN, key, strict=True)),
                **to_target(records, target),
                "final_acc": final_accuracy(records),
                "final_loss": float(records[-1]["train_loss"]),
                "status": records[-1]["status"],
            })  # fmt: skip
    columns = [*RUN, "seconds", "flops", "step", "final_acc", "final_loss", "status"]
    return pd.DataFrame(rows, columns=columns)


def spread(values: list[float]) -> dict[str, float]:
    """Median (infinite entries included), min and max over seeds, and how many are finite."""
    return {
        "median": statistics.median(values) if values else math.nan,
        "min": min(values, default=math.nan),
        "max": max(values, default=math.nan),
        "reached": sum(math.isfinite(v) for v in values),
        "runs": len(values),
    }


def per_setting(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task and estimator setting: time-, FLOPs- and step-to-target spreads over seeds.

    Columns: task, estimator, params, then `<seconds|flops|step>_<median|min|max>`, reached, runs.
    """
    rows = []
    for key, group in runs.groupby(KEYS, sort=False):
        row = dict(zip(KEYS, key, strict=True))
        for column in ("seconds", "flops", "step"):
            s = spread(group[column].tolist())
            row |= {f"{column}_{k}": s[k] for k in ("median", "min", "max")}
            row |= {"reached": s["reached"], "runs": s["runs"]}
        rows.append(row)
    columns = [*KEYS, *(f"{c}_{k}" for c in ("seconds", "flops", "step")
                        for k in ("median", "min", "max")), "reached", "runs"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)
