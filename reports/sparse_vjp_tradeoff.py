"""Table: sparse-vjp's keep trade-off in real training runs, steps, time and FLOPs to target.

Reads `sparse_vjp_tradeoff.csv`, which `python -m runners.study sparse-vjp-tradeoff --out DIR`
writes: one row per training run (task, keep, seed; keep 1 is backprop) with the step, epochs,
training seconds and FLOPs to the first evaluation at or above the target (counted from step 0,
like the sweep; inf when never reached), its seconds per step and its final accuracy. Per task
and keep the table gives the runs that reached the target and the spreads over them.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from reports.load import Results
from reports.section import Section, skip
from reports.style import Style, fmt

FILE = "sparse_vjp_tradeoff.csv"
NAME = "sparse-vjp-tradeoff"
HOW = "python -m runners.study sparse-vjp-tradeoff --out DIR"
TITLE = "Table: sparse-vjp steps, time and FLOPs to target vs keep"
QUESTION = (
    "Do cheaper sparse-vjp steps pay for the extra steps they need: does a keep fraction below "
    "1 reach the target accuracy sooner than backprop (keep 1)?"
)
SOURCE = (
    f"{FILE} (written by `{HOW}`), one row per training run; per task and keep: runs that "
    "reached the target / runs, then over the runs that reached it the median [min-max] steps, "
    "epochs, training seconds (evaluation excluded) and GFLOPs to the first evaluation at or "
    "above target, counted from step 0 like the sweep (`measurements.schema.to_target`; an earlier "
    "script skipped step 0); s/step vs keep 1: median seconds per step over keep 1's; "
    "final val acc: median. Soonest keep: least median seconds to target over all runs, a run "
    "that never reached it counting as ∞."
)


def _spread(values: pd.Series, scale: float = 1.0) -> str:
    """`median [min-max]` of finite values × `scale`, or `-` when there are none."""
    v = values[values.map(math.isfinite)] * scale
    if v.empty:
        return "-"
    return f"{fmt(v.median())} [{fmt(v.min())}-{fmt(v.max())}]"


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per task and keep (file order) with the table's quantities."""
    out = []
    for task, group in rows.groupby("task", sort=False):
        dense = group.loc[group["keep"] == 1, "step_seconds"]
        dense_step = dense.median() if len(dense) else math.nan
        for keep, runs in group.groupby("keep", sort=False):
            hits = runs[runs["reached"].astype(bool)]
            out.append({
                "task": task, "keep": keep, "budget": int(runs["budget_steps"].max()),
                "reached": len(hits), "runs": len(runs),
                "steps": _spread(hits["steps_to_target"]),
                "epochs": _spread(hits["epochs_to_target"]),
                "seconds": _spread(hits["seconds_to_target"]),
                "gflops": _spread(hits["flops_to_target"], 1e-9),
                "step_ratio": runs["step_seconds"].median() / dense_step,
                "final_acc": runs["final_acc"].median(),
                "median_seconds": runs["seconds_to_target"].median(),
                "diverged": int((runs["status"] == "diverged").sum()),
            })  # fmt: skip
    return pd.DataFrame(out)


def table(summ: pd.DataFrame) -> str:
    body = [[r.task, f"{r.keep:g}", r.budget, f"{r.reached}/{r.runs}", r.steps, r.epochs,
             r.seconds, r.gflops, fmt(r.step_ratio), fmt(r.final_acc)]
            for r in summ.itertuples()]  # fmt: skip
    headers = ["task", "keep", "budget (steps)", "reached", "steps to target", "epochs to target",
               "seconds to target", "GFLOPs to target", "s/step vs keep 1",
               "final val acc"]  # fmt: skip
    return tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True)


def findings(rows: pd.DataFrame, summ: pd.DataFrame) -> list[str]:
    out = []
    for task, group in summ.groupby("task", sort=False):
        first = rows[rows["task"] == task].iloc[0]
        setting = (f"On {task} (target {first['target']:g}, batch {int(first['batch'])}, lr "
                   f"{first['lr']:g}, sketch {first['sketch']}, axis {first['axis']})")  # fmt: skip
        best = group.loc[group["median_seconds"].idxmin()]
        dense = group[group["keep"] == 1]
        if not math.isfinite(best["median_seconds"]):
            text = f"{setting} no keep reached the target in at least half its runs"
        else:
            runs = f"{best['reached']}/{best['runs']} runs"
            text = (f"{setting} keep {best['keep']:g} reached the target soonest: median "
                    f"{fmt(best['median_seconds'])} s ({runs})")  # fmt: skip
            if len(dense) and best["keep"] != 1:
                text += f" against {fmt(dense['median_seconds'].iloc[0])} s at keep 1"
        low = group.loc[group["keep"].idxmin()]
        if low["keep"] < 1 and len(dense):
            text += (f"; a step at keep {low['keep']:g} takes {fmt(low['step_ratio'])}× keep 1's "
                     "time")  # fmt: skip
        diverged = int(group["diverged"].sum())
        if diverged:
            text += f"; {diverged} runs diverged"
        out.append(text + ".")
    return out


def build(res: Results, style: Style, out: Path) -> list[Section]:
    rows = res.frame(FILE)
    if rows is None:
        return [skip(TITLE, QUESTION, SOURCE,
                     f"the results hold no {FILE} (write it with `{HOW}`)")]  # fmt: skip
    summ = summary(rows)
    text = table(summ)
    files = [f"tables/{NAME}.md"]
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / files[0]).write_text(f"# {TITLE.removeprefix('Table: ')}\n\nSource: {SOURCE}\n\n"
                                f"{text}\n")  # fmt: skip
    return [Section(TITLE, QUESTION, SOURCE, files, findings(rows, summ), body=text)]
