"""Per task, one row per estimator setting: gradient quality, cost and time to target.

Written as markdown (tabulate, pipe format) to `tables/<task>.md`, with the quality at every
checkpoint in `tables/<task>-quality.md`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from reports.load import KEYS, Results
from reports.quality import at_end, over_seeds
from reports.reach import per_setting, runs_to_target
from reports.section import Section, skip
from reports.style import BACKPROP, Style, fmt, slug

QUESTION = "How close, how cheap and how fast is each estimator setting on this task?"
COST = {"FLOPs ×": "flop_ratio", "time ×": "time_ratio", "memory ×": "memory_ratio"}


def interval(value: float, lo: float, hi: float) -> str:
    return f"{fmt(value)} [{fmt(lo)}, {fmt(hi)}]"


def summary(res: Results) -> pd.DataFrame:
    """One row per task and setting with every number the task tables show (NaN when absent).

    Quality: medians over seeds at each task's last checkpoint (`layer == "total"`), interval
    envelopes over seeds. Cost: `cost.csv` ratios. Time to target: spreads over seeds and the
    speedups over backprop's medians on the same task.
    """
    parts = []
    quality = res.frame("quality.csv")
    if quality is not None:
        end = over_seeds(at_end(quality[quality["layer"] == "total"]), [*KEYS, "checkpoint"])
        parts.append(end)
    cost = res.frame("cost.csv")
    if cost is not None:
        parts.append(cost.groupby(KEYS, sort=False)[list(COST.values())].median().reset_index())
    runs = runs_to_target(res)
    if len(runs):
        reach = per_setting(runs)
        base = reach[reach["estimator"] == BACKPROP].set_index("task")
        for unit in ("seconds", "flops"):
            ref = reach["task"].map(base[f"{unit}_median"]).astype(float)
            mine = reach[f"{unit}_median"].astype(float)
            reach[f"speedup_{unit}"] = (ref / mine).where(np.isfinite(ref) & np.isfinite(mine))
        parts.append(reach)
    if not parts:
        return pd.DataFrame(columns=KEYS)
    table = parts[0]
    for part in parts[1:]:
        table = table.merge(part, on=KEYS, how="outer", sort=False)
    return table


def _finite(x: object) -> bool:
    """Whether `x` is a finite number (numpy scalars included)."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _rows(task_rows: pd.DataFrame, style: Style, res: Results) -> tuple[list[str], list[list]]:
    has = set(task_rows.columns)
    headers = ["estimator"]
    if "cosine" in has:
        headers += ["cosine [95% CI]", "rel. bias", "rel. variance", "rel. MSE [95% CI]",
                    "work MSE"]  # fmt: skip
    if "flop_ratio" in has:
        headers += list(COST)
    if "seconds_median" in has:
        headers += ["s to target: median [min, max]", "FLOPs to target: median [min, max]",
                    "reached", "speedup (time)", "speedup (FLOPs)"]  # fmt: skip
    rows = []
    for r in task_rows.to_dict("records"):
        row = [style.label(r["estimator"], r["params"])]
        if "cosine" in has:
            row += [interval(r["cosine"], r["cosine_lo"], r["cosine_hi"]), fmt(r["rel_bias"]),
                    fmt(r["rel_variance"]), interval(r["rel_mse"], r["rel_mse_lo"],
                    r["rel_mse_hi"]), fmt(r["work_mse"])]  # fmt: skip
        if "flop_ratio" in has:
            row += [fmt(r[c]) for c in COST.values()]
        if "seconds_median" in has:
            runs = r["runs"]
            row += [
                interval(r["seconds_median"], r["seconds_min"], r["seconds_max"]),
                interval(r["flops_median"], r["flops_min"], r["flops_max"]),
                f"{int(r['reached'])}/{int(runs)}" if _finite(runs) else "-",
                fmt(r["speedup_seconds"]),
                fmt(r["speedup_flops"]),
            ]
        rows.append(row)
    return headers, rows


def _findings(task: str, t: pd.DataFrame, style: Style, res: Results) -> list[str]:
    out = []
    others = t[t["estimator"] != BACKPROP]
    name = {i: style.label(r["estimator"], r["params"]) for i, r in t.iterrows()}
    if "cosine" in t and others["cosine"].notna().any():
        best = others.loc[others["cosine"].idxmax()]
        out.append(
            f"At the last checkpoint (step {int(best['checkpoint'])}), the setting closest to the "
            f"exact gradient is {name[best.name]}: cosine "
            f"{interval(best['cosine'], best['cosine_lo'], best['cosine_hi'])}, relative MSE "
            f"{fmt(best['rel_mse'])}."
        )
        if others["work_mse"].notna().any():
            w = others.loc[others["work_mse"].idxmin()]
            out.append(
                f"Lowest work-normalised MSE: {name[w.name]}, {fmt(w['work_mse'])} (backprop = 1; "
                "below 1 means more gradient information per FLOP than a backprop mini-batch)."
            )
    if "flop_ratio" in t and others["flop_ratio"].notna().any():
        c = others.loc[others["flop_ratio"].idxmin()]
        out.append(
            f"Cheapest step in FLOPs: {name[c.name]} at {fmt(c['flop_ratio'])}× backprop's "
            f"(time {fmt(c['time_ratio'])}×, memory {fmt(c['memory_ratio'])}×)."
        )
    if "seconds_median" in t and t["runs"].notna().any():
        target = fmt(res.target(task) or math.nan)
        bp = t[t["estimator"] == BACKPROP]
        if len(bp) and _finite(bp.iloc[0]["runs"]):
            b = bp.iloc[0]
            seeds = f"{int(b['reached'])}/{int(b['runs'])} seeds"
            out.append(
                f"Backprop reaches the target accuracy {target} in a median "
                f"{interval(b['seconds_median'], b['seconds_min'], b['seconds_max'])} s ({seeds})."
                if _finite(b["seconds_median"])
                else f"Backprop does not reach the target accuracy {target} in the median over "
                f"seeds ({seeds} reached it)."
            )
        reached = others[others["seconds_median"].apply(_finite)]
        if len(reached):
            f = reached.loc[reached["seconds_median"].idxmin()]
            speedup = (
                f"speedup over backprop {fmt(f['speedup_seconds'])}× in time and "
                f"{fmt(f['speedup_flops'])}× in FLOPs"
                if _finite(f["speedup_seconds"])
                else "no speedup over backprop is defined (backprop's median is ∞ or absent)"
            )
            out.append(
                f"Fastest other setting to the target: {name[f.name]}, median "
                f"{interval(f['seconds_median'], f['seconds_min'], f['seconds_max'])} s "
                f"({int(f['reached'])}/{int(f['runs'])} seeds); {speedup}."
            )
        elif len(others):
            out.append(
                f"No setting other than backprop reaches the target {target} in the median "
                "over seeds (the table's `reached` column gives the seeds that did)."
            )
    return out


def _quality_table(quality: pd.DataFrame, task: str, style: Style) -> str:
    total = quality[(quality["task"] == task) & (quality["layer"] == "total")]
    rows = []
    for r in over_seeds(total, [*KEYS, "checkpoint"]).to_dict("records"):
        rows.append([
            style.label(r["estimator"], r["params"]), int(r["checkpoint"]),
            interval(r["cosine"], r["cosine_lo"], r["cosine_hi"]), fmt(r["rel_bias"]),
            fmt(r["rel_variance"]), interval(r["rel_mse"], r["rel_mse_lo"], r["rel_mse_hi"]),
            fmt(r["work_mse"]), int(r["seeds"]),
        ])  # fmt: skip
    headers = ["estimator", "checkpoint (step)", "cosine [95% CI]", "rel. bias", "rel. variance",
               "rel. MSE [95% CI]", "work MSE", "seeds"]  # fmt: skip
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)


SOURCE = (
    'quality.csv, `layer == "total"`, the task\'s last checkpoint, median over seeds '
    "(intervals: envelope of the seeds' 95% draw intervals); cost.csv (ratios to backprop); "
    'train.csv with the target `manifest.json["tasks"][task]["target_acc"]`: time and FLOPs '
    "to the first eval at or above it, median over seeds with a seed that never reached it "
    "counted as ∞, [min, max] over seeds; speedup = backprop's median / the setting's median."
)


def build(res: Results, style: Style, out: Path) -> list[Section]:
    """One section and one table file per task (plus its quality-by-checkpoint table)."""
    table = summary(res)
    sections = []
    quality = res.frame("quality.csv")
    for task in res.tasks():
        title = f"Table: {task}"
        t = table[table["task"] == task]
        if t.empty:
            sections.append(skip(title, QUESTION, SOURCE, "no rows for this task"))
            continue
        order = list(style.labels)
        t = t.assign(_order=[order.index((e, p)) for e, p in zip(t["estimator"], t["params"],
                                                                 strict=True)])  # fmt: skip
        t = t.sort_values("_order").drop(columns="_order")
        headers, rows = _rows(t, style, res)
        text = tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)
        (out / "tables").mkdir(parents=True, exist_ok=True)
        files = [f"tables/{slug(task)}.md"]
        (out / files[0]).write_text(f"# {task}\n\nSource: {SOURCE}\n\n{text}\n")
        if quality is not None and (quality["task"] == task).any():
            files.append(f"tables/{slug(task)}-quality.md")
            (out / files[1]).write_text(
                f"# {task}: gradient quality at each checkpoint\n\nSource: quality.csv, "
                f'`task == "{task}"`, `layer == "total"`, median over seeds (intervals: '
                f"envelope of the seeds' 95% draw intervals).\n\n"
                f"{_quality_table(quality, task, style)}\n"
            )
        missing = [f for f in ("quality.csv", "cost.csv", "train.csv") if res.frame(f) is None]
        source = SOURCE + (f" Absent from the results: {', '.join(missing)}." if missing else "")
        sections.append(
            Section(title, QUESTION, source, files, _findings(task, t, style, res), body=text)
        )
    return sections
