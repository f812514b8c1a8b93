"""Table: R draws in one `estimate_draws` call against R single estimates.

Reads `quality_draws.csv` (`python -m runners.study quality-draws --out DIR`): per task and
estimator the median time of R single `estimate` calls and of one call drawing R, timed
interleaved in one run, and their ratio. The forward-gradient study's draws table
(`fg_draws.csv`, `reports/forward_gradients.py`) has the same columns and is drawn by the
functions here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from reports.load import Results
from reports.section import Section, skip, write_table
from reports.style import Style, fmt

FILE = "quality_draws.csv"
HOW = "python -m runners.study quality-draws --out DIR"
GOAL = 4.0  # the protocol: R = 64 batched draws at least 4x faster than 64 single ones
TITLE = "Table: R draws in one call against R single estimates"
QUESTION = (
    f"Is drawing R estimates in one vectorised call at least {GOAL:g}× faster than R single "
    "calls, as the protocol asks of the forward-gradient and sparse-VJP estimators?"
)
SOURCE = (
    f"{FILE} (written by `{HOW}`), every row: per task (its first `batch` training examples, "
    "model seeded 0) and estimator, median seconds of R single `estimate` calls and of one "
    "`estimate_draws(batch, R)`, over `repeats` interleaved rounds; speed-up = single / batched."
)


def devices(rows: pd.DataFrame) -> str:
    """The devices and thread counts of the rows, e.g. `cpu (2 threads)`."""
    pairs = zip(rows["device"], rows["threads"], strict=True)
    return ", ".join(dict.fromkeys(f"{d} ({t} threads)" for d, t in pairs))


def span(values: pd.Series, unit: str = "") -> str:
    """`lo–hi` of the values (one number when they are all equal), formatted by `fmt`."""
    lo, hi = fmt(values.min()), fmt(values.max())
    return f"{lo}{unit}" if lo == hi else f"{lo}{unit}–{hi}{unit}"


def draws_table(rows: pd.DataFrame) -> str:
    """The rows as a markdown pipe table, in file order."""
    body = [
        [r["task"], r["estimator"], int(r["draws"]), int(r["batch"]), fmt(r["single_s"]),
         fmt(r["batched_s"]), fmt(r["speedup"]), int(r["repeats"])]
        for _, r in rows.iterrows()
    ]  # fmt: skip
    headers = ["task", "estimator", "R", "batch", "R single (s)", "batched (s)", "speed-up",
               "rounds"]  # fmt: skip
    return tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True)


def draws_findings(rows: pd.DataFrame) -> list[str]:
    met = rows[rows["speedup"] >= GOAL]
    low, high = rows.loc[rows["speedup"].idxmin()], rows.loc[rows["speedup"].idxmax()]
    draws = ", ".join(str(int(r)) for r in dict.fromkeys(rows["draws"]))
    out = [
        f"R = {draws} draws in one call are at least {GOAL:g}× faster than single calls on "
        f"{len(met)}/{len(rows)} rows; the smallest speed-up is {low['estimator']} on "
        f"{low['task']} ({fmt(low['speedup'])}×), the largest {high['estimator']} on "
        f"{high['task']} ({fmt(high['speedup'])}×).",
    ]
    missed = rows[rows["speedup"] < GOAL]
    if len(missed):
        out.append("Below the goal: " + "; ".join(
            f"{r['estimator']} on {r['task']} {fmt(r['speedup'])}×" for _, r in missed.iterrows()
        ) + ".")  # fmt: skip
    out.append(f"Measured on {devices(rows)}, medians of {span(rows['repeats'])} interleaved "
               "rounds.")  # fmt: skip
    return out


def build(res: Results, style: Style, out: Path) -> list[Section]:
    rows = res.frame(FILE)
    if rows is None:
        return [skip(TITLE, QUESTION, SOURCE, f"the results hold no {FILE} (write it with "
                                              f"`{HOW}`)")]  # fmt: skip
    text = draws_table(rows)
    files = [write_table(out, "quality-draws", TITLE, SOURCE, text)]
    return [Section(TITLE, QUESTION, SOURCE, files, draws_findings(rows), body=text)]
