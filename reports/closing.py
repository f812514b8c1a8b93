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
from reports.style import Style
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


WIDTH = 100  # terminal columns every line of the table fits in


def _render(headers: list[str], rows: list[list[object]], cols: list[int]) -> str:
    """The first column and columns `cols` of `rows` as a plain table."""
    return tabulate([[r[0], *(r[c] for c in cols)] for r in rows],
                    headers=[headers[0], *(headers[c] for c in cols)], floatfmt=".3g")  # fmt: skip


def fit(headers: list[str], rows: list[list[object]], width: int = WIDTH) -> str:
    """`rows` as a plain table of at most `width` columns: when all columns do not fit, the
    columns after the first are split into consecutive blocks, each repeating the first (a
    first column wider than `width` alone is not cut)."""
    blocks: list[list[int]] = [[]]
    for col in range(1, len(headers)):
        text = _render(headers, rows, [*blocks[-1], col])
        if blocks[-1] and max(map(len, text.splitlines())) > width:
            blocks.append([col])
        else:
            blocks[-1].append(col)
    return "\n\n".join(_render(headers, rows, block) for block in blocks)


def closing_table(res: Results) -> str:
    """The table as text, one block per task headed by its name and target, estimators named
    by the report's short labels, every line at most `WIDTH` columns; or a line saying there
    were no rows."""
    table = summary(res)
    if table.empty:
        return "no results were written"
    runs = runs_to_target(res)
    if len(runs):
        final = runs.groupby(KEYS, sort=False)["final_acc"].median().rename("final_acc")
        table = table.merge(final.reset_index(), on=KEYS, how="left")
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
    style = Style.of(zip(table["estimator"], table["params"], strict=True))
    present = [c for c in COLUMNS if c in table]
    headers = ["estimator", *(COLUMNS[c] for c in present)]
    blocks = []
    for task, rows in table.groupby("task", sort=False):
        target = res.target(str(task))
        head = f"{task}" + ("" if target is None else f" (target accuracy {target:.3g})")
        cells = [
            [style.label(r["estimator"], r["params"]),
             *("" if isinstance(r[c], float) and pd.isna(r[c]) else r[c] for c in present)]
            for r in rows.to_dict("records")
        ]  # fmt: skip
        blocks.append(f"{head}\n{fit(headers, cells)}")
    return "\n\n".join(blocks)
