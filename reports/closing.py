"""The closing table a sweep prints: one row per task and estimator setting.

It is built from `reports.tables.summary`, the numbers the report's task tables show (target
from the manifest, quality at each task's last checkpoint, cost ratios, time to target), so the
terminal and the report never disagree.
"""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from reports.load import KEYS, Results
from reports.reach import runs_to_target
from reports.tables import flag, summary

COLUMNS = {
    "final_acc": "final acc",
    "seconds_median": "s to target",
    "modelled_median": "modelled s",
    "reached": "reached",
    "cosine": "cosine",
    "rel_mse": "rel MSE",
    "work_mse": "work MSE",
    "flop_ratio": "FLOPs x",
    "time_ratio": "time x",
    "memory_ratio": "memory x",
}


def closing_table(res: Results) -> str:
    """The table as text, or a line saying there were no rows."""
    table = summary(res)
    if table.empty:
        return "no results were written"
    runs = runs_to_target(res)
    if len(runs):
        final = runs.groupby(KEYS, sort=False)["final_acc"].median().rename("final_acc")
        table = table.merge(final.reset_index(), on=KEYS, how="left")
    table = table.assign(target=table["task"].map(lambda t: res.target(t)))
    if "reached" in table:
        table["reached"] = [
            f"{int(r)}/{int(n)}" if pd.notna(n) else "" for r, n in zip(table["reached"],
                                                                       table["runs"], strict=True)
        ]  # fmt: skip
    if "noisy" in table:
        table["time_ratio"] = [
            "" if pd.isna(t) else f"{t:.3g}" + (" (noisy)" if flag(n) else "")
            for t, n in zip(table["time_ratio"], table["noisy"], strict=True)
        ]
    present = [c for c in COLUMNS if c in table]
    if "final_acc" in present:
        present.insert(1, "target")
    labels = [COLUMNS.get(c, c) for c in present]
    rows = [
        [r["task"], r["estimator"] if r["params"] == "-" else f"{r['estimator']}:{r['params']}",
         *("" if isinstance(r[c], float) and pd.isna(r[c]) else r[c] for c in present)]
        for r in table.to_dict("records")
    ]  # fmt: skip
    return tabulate(rows, headers=["task", "estimator", *labels], floatfmt=".3g")
