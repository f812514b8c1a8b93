"""Per task, one row per estimator setting: gradient quality, cost and time to target.

Written as markdown (tabulate, pipe format) to `tables/<task>.md`, with the quality at every
checkpoint in `tables/<task>-quality.md`. Every finding is generated from a check on the
intervals (docs/protocol.md, "Reports"): a cosine, bias or work-MSE difference is stated only
when its 95% interval (or the bias test at `ALPHA`) excludes the compared value, and a cost cell
marked `noisy` is shown marked and left out of the cheapest / fastest sentences.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from reports.break_even import break_even_findings
from reports.load import KEYS, Results
from reports.phrases import cheapest, other_word, versus_backprop
from reports.quality import ALPHA, at_end, cosine_cell, over_seeds, significant
from reports.reach import per_setting, runs_to_target
from reports.section import Section, skip
from reports.style import BACKPROP, MSE_RANGE, Style, fmt, interval, slug

QUESTION = "How close, how cheap and how fast is each estimator setting on this task?"
# cost.csv columns summarised by their median over rows of one setting (one row a device).
COST_MEDIANS = ["flop_ratio", "elementwise_ratio", "time_ratio", "aa_ratio", "memory_ratio",
                "step_seconds"]  # fmt: skip
QUALITY_HEADERS = ["cosine [95% CI]", "rel. bias ± se (* p < 0.05)", "bias p", "rel. variance",
                   "rel. MSE [95% CI]", "work MSE [95% CI]", "c*"]  # fmt: skip
COST_HEADERS = ["FLOPs ×", "elementwise ×", "time × [95% CI]", "A/A ×", "memory ×", "s/step"]
TRAIN_HEADERS = ["s to target: median [min, max]", "modelled s to target: median [min, max]",
                 "FLOPs to target: median [min, max]", "reached", "speedup (time)",
                 "speedup (modelled)", "speedup (FLOPs)"]  # fmt: skip
BIAS_TEST = (
    'Hotelling T² test of "the draws\' mean equals the exact batch gradient", '
    f"alpha = {ALPHA}, seeds combined by Fisher's method"
)
WORK_MSE = (
    "scale-invariant: each estimate rescaled by its best scalar c* = E<g_hat, G> / "
    "E||g_hat||², as a tuned learning rate would; times the FLOP ratio; a backprop mini-batch = 1"
)
NOISY = (
    "time interval wider than ±10% or A/A ratio outside 0.9-1.1 after the cell's repeats; "
    "their time ratios are not findings"
)
MODELLED = (
    "steps to target × the mean step time of the setting's interleaved cost cell, which does "
    "not depend on the machine's load during training"
)
Row = Mapping[str, Any]
Names = Mapping[Any, str]


def flag(value: object) -> bool:
    """A true/false cell of a CSV (`noisy`) as a bool; absent (NaN, "") is False."""
    return str(value).strip().lower() in ("true", "1", "1.0")


def bias_cell(r: Row, mark: bool = True) -> str:
    """ "0.2 ± 0.05", with " *" when the bias test rejects at `ALPHA` and `mark`."""
    star = " *" if mark and significant(r["bias_p"]) else ""
    return f"{fmt(r['rel_bias'])} ± {fmt(r['rel_bias_se'])}{star}"


def time_cell(r: Row) -> str:
    """ "1.5 [1.4, 1.6]", with " (noisy)" when the cost cell is marked noisy."""
    noisy = " (noisy)" if flag(r["noisy"]) else ""
    return f"{interval(r['time_ratio'], r['time_ratio_lo'], r['time_ratio_hi'])}{noisy}"


def work_cell(r: Row) -> str:
    """ "0.5 [0.4, 0.6], c* 0.9"."""
    work = interval(r["work_mse"], r["work_mse_lo"], r["work_mse_hi"], MSE_RANGE)
    return f"{work}, c* {fmt(r['work_scale'])}"


def cost_by_setting(cost: pd.DataFrame) -> pd.DataFrame:
    """Per setting: medians of `COST_MEDIANS`, the envelope of the time intervals, and `noisy`
    when any of its rows is."""
    groups = cost.groupby(KEYS, sort=False)
    out = groups[COST_MEDIANS].median()
    out["time_ratio_lo"] = groups["time_ratio_lo"].min()
    out["time_ratio_hi"] = groups["time_ratio_hi"].max()
    out["noisy"] = groups["noisy"].agg(lambda s: any(flag(v) for v in s))
    return out.reset_index()


def summary(res: Results) -> pd.DataFrame:
    """One row per task and setting with every number the task tables show (NaN when absent).

    Quality: `reports.quality.over_seeds` at each task's last checkpoint (`layer == "total"`).
    Cost: `cost.csv` per setting (`cost_by_setting`). Time to target: spreads over seeds, modelled
    seconds `modelled_<median|min|max>` = `step_<...>` × `step_seconds` (NaN without a cost
    row), and the speedups over backprop's medians on the same task.
    """
    parts = []
    quality = res.frame("quality.csv")
    if quality is not None:
        end = at_end(quality[quality["layer"] == "total"])
        parts.append(over_seeds(end, [*KEYS, "checkpoint"]))
    cost = res.frame("cost.csv")
    if cost is not None:
        parts.append(cost_by_setting(cost))
    runs = runs_to_target(res)
    if len(runs):
        parts.append(per_setting(runs))
    if not parts:
        return pd.DataFrame(columns=KEYS)
    table = parts[0]
    for part in parts[1:]:
        table = table.merge(part, on=KEYS, how="outer", sort=False)
    if len(runs):
        step_seconds = table.get("step_seconds", math.nan)
        for k in ("median", "min", "max"):
            table[f"modelled_{k}"] = table[f"step_{k}"] * step_seconds
        base = table[table["estimator"] == BACKPROP].set_index("task")
        for unit in ("seconds", "modelled", "flops"):
            ref = table["task"].map(base[f"{unit}_median"]).astype(float)
            mine = table[f"{unit}_median"].astype(float)
            table[f"speedup_{unit}"] = (ref / mine).where(np.isfinite(ref) & np.isfinite(mine))
    return table


def _finite(x: object) -> bool:
    """Whether `x` is a finite number (numpy scalars included)."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _rows(task_rows: pd.DataFrame, style: Style) -> tuple[list[str], list[list]]:
    has = set(task_rows.columns)
    headers = ["estimator"]
    headers += QUALITY_HEADERS if "cosine" in has else []
    headers += COST_HEADERS if "flop_ratio" in has else []
    headers += TRAIN_HEADERS if "seconds_median" in has else []
    rows = []
    for r in task_rows.to_dict("records"):
        row = [style.label(r["estimator"], r["params"])]
        if "cosine" in has:
            row += [cosine_cell(r), bias_cell(r), fmt(r["bias_p"], 2), fmt(r["rel_variance"]),
                    interval(r["rel_mse"], r["rel_mse_lo"], r["rel_mse_hi"], MSE_RANGE),
                    interval(r["work_mse"], r["work_mse_lo"], r["work_mse_hi"], MSE_RANGE),
                    fmt(r["work_scale"])]  # fmt: skip
        if "flop_ratio" in has:
            row += [fmt(r["flop_ratio"]), fmt(r["elementwise_ratio"]), time_cell(r),
                    fmt(r["aa_ratio"]), fmt(r["memory_ratio"]), fmt(r["step_seconds"])]  # fmt: skip
        if "seconds_median" in has:
            runs = r["runs"]
            row += [
                interval(r["seconds_median"], r["seconds_min"], r["seconds_max"]),
                interval(r["modelled_median"], r["modelled_min"], r["modelled_max"]),
                interval(r["flops_median"], r["flops_min"], r["flops_max"]),
                f"{int(r['reached'])}/{int(runs)}" if _finite(runs) else "-",
                fmt(r["speedup_seconds"]),
                fmt(r["speedup_modelled"]),
                fmt(r["speedup_flops"]),
            ]
        rows.append(row)
    return headers, rows


def _listing(rows: pd.DataFrame, name: Names, cell: Callable[[Row], str]) -> str:
    """ "A (cell of A), B (cell of B)" for the rows of `rows`."""
    return ", ".join(f"{name[i]} ({cell(r)})" for i, r in rows.iterrows())


def _closest(o: pd.DataFrame, name: Names, other: str) -> str | None:
    """The setting closest to the exact gradient, named only when its cosine interval lies
    above every other setting's; otherwise the settings it cannot be told apart from."""
    o = o[o["cosine"].notna()]
    if o.empty:
        return None
    best = o.loc[o["cosine"].idxmax()]
    head = f"At the last checkpoint (step {int(best['checkpoint'])}), "
    mse = interval(best["rel_mse"], best["rel_mse_lo"], best["rel_mse_hi"], MSE_RANGE)
    if len(o) == 1:
        return (f"{head}the only {other}setting, {name[best.name]}, has cosine "
                f"{cosine_cell(best)} with the exact gradient, relative MSE {mse}.")  # fmt: skip
    rest = o.drop(index=best.name).sort_values("cosine", ascending=False)
    tied = rest[~(rest["cosine_hi"] < best["cosine_lo"])]
    if tied.empty:
        runner = rest.iloc[0]
        return (f"{head}the setting closest to the exact gradient is {name[best.name]}: cosine "
                f"{cosine_cell(best)}, its 95% interval above every other setting's (runner-up "
                f"{name[runner.name]}: {cosine_cell(runner)}); relative MSE {mse}.")  # fmt: skip
    return (f"{head}the highest cosine with the exact gradient is {name[best.name]}'s, "
            f"{cosine_cell(best)}, but it is not distinguishable at these draws from "
            f"{_listing(tied, name, cosine_cell)}: their 95% intervals reach its lower end or are "
            "absent.")  # fmt: skip


def _with_p(r: Row) -> str:
    return f"{bias_cell(r, mark=False)}, p = {fmt(r['bias_p'], 2)}"


def _with_aa(r: Row) -> str:
    return f"time {time_cell(r)}, A/A {fmt(r['aa_ratio'])}"


def _bias(o: pd.DataFrame, name: Names) -> str | None:
    """Which settings' bias the test finds significant, which not, which were not tested."""
    o = o[o["rel_bias"].notna()]
    if o.empty:
        return None
    untested = o["bias_p"].isna()
    rejects = o["bias_p"].map(significant)
    parts = []
    if rejects.any():
        parts.append(f"a significant bias for {_listing(o[rejects], name, _with_p)}")
    if (~rejects & ~untested).any():
        parts.append(f"no significant bias (not distinguishable from 0 at these draws) for "
                     f"{_listing(o[~rejects & ~untested], name, _with_p)}")  # fmt: skip
    if untested.any():
        parts.append("no bias test in the results (relative bias "
                     f"{_listing(o[untested], name, bias_cell)}), so no verdict")  # fmt: skip
    return (f"Relative bias ± standard error at step {int(o['checkpoint'].iloc[0])} "
            f"({BIAS_TEST}): " + "; ".join(parts) + ".")  # fmt: skip


def _work(o: pd.DataFrame, name: Names, legacy: bool) -> str | None:
    """Work MSE against 1, settings grouped by where their 95% interval lies."""
    o = o[o["work_mse"].notna()]
    if o.empty:
        return None
    floor = o["work_floor"] if "work_floor" in o else pd.Series(math.nan, index=o.index)
    absent = o["work_mse_lo"].isna() | o["work_mse_hi"].isna()
    uninformed = ~absent & floor.notna() & (o["work_mse_hi"] >= floor)
    below = (o["work_mse_hi"] < 1) & ~uninformed
    above = (o["work_mse_lo"] > 1) & ~uninformed
    straddles = ~below & ~above & ~absent & ~uninformed
    old = (" (quality.csv was written before protocol 2, when work MSE was not "
           "scale-invariant)" if legacy else "")  # fmt: skip
    groups = (
        (below, "lies below 1 (more gradient information per FLOP than a backprop mini-batch)"),
        (above, "lies above 1 (less gradient information per FLOP than a backprop mini-batch)"),
        (straddles, "contains 1 (not distinguishable from a backprop mini-batch at these draws)"),
        (absent, f"is absent{old}, so no comparison with 1,"),
        (
            uninformed,
            "reaches the no-information level `work_floor` (what an estimate carrying "
            "nothing about the full-data gradient scores at this FLOP ratio: uninformative at "
            "these draws, whatever its value against 1)",
        ),
    )
    parts = [f"{text} for {_listing(o[rows], name, work_cell)}" for rows, text in groups
             if rows.any()]  # fmt: skip
    return (f"Work MSE at step {int(o['checkpoint'].iloc[0])} ({WORK_MSE}): the 95% interval "
            + "; it ".join(parts) + ".")  # fmt: skip


def _time_verdict(r: Row) -> str:
    if not (_finite(r["time_ratio_lo"]) and _finite(r["time_ratio_hi"])):
        return "no interval in the results, so no comparison with backprop"
    if r["time_ratio_hi"] < 1:
        return "faster than backprop's step (its interval is below 1)"
    if r["time_ratio_lo"] > 1:
        return "slower than backprop's step (its interval is above 1)"
    return "not distinguishable from backprop's step (its interval contains 1)"


def _cost_findings(o: pd.DataFrame, name: Names) -> list[str]:
    """Noisy cells listed; the cheapest step in FLOPs and the fastest in time among the rest."""
    o = o[o["flop_ratio"].notna()]
    if o.empty:
        return []
    noisy = o["noisy"].map(flag)
    quiet = o[~noisy]
    out = []
    if noisy.any():
        out.append(f"Cost cells marked noisy ({NOISY}): {_listing(o[noisy], name, _with_aa)}.")
    if quiet.empty:
        out.append("No cheapest or fastest step is named: every cost cell is noisy.")
        return out
    among = " among cost cells not marked noisy" if noisy.any() else ""
    c = quiet.loc[quiet["flop_ratio"].idxmin()]
    out.append(f"{cheapest(name[c.name], c['flop_ratio'], len(quiet), among)} (linear algebra "
               f"included; elementwise {fmt(c['elementwise_ratio'])}×, memory "
               f"{fmt(c['memory_ratio'])}×).")  # fmt: skip
    timed = quiet[quiet["time_ratio"].notna()]
    if len(timed):
        f = timed.loc[timed["time_ratio"].idxmin()]
        which = "Fastest step in time" if len(timed) > 1 else "Step time"
        out.append(f"{which}{among}: {name[f.name]} at {time_cell(f)}× backprop's "
                   f"(A/A control {fmt(f['aa_ratio'])}×): {_time_verdict(f)}.")  # fmt: skip
    return out


def _reach(task: str, t: pd.DataFrame, name: Names, res: Results) -> list[str]:
    """Backprop's time to target, the fastest other setting in wall and modelled seconds."""
    out = []
    target = fmt(res.target(task) or math.nan)
    others = t[t["estimator"] != BACKPROP]
    bp = t[t["estimator"] == BACKPROP]
    other = other_word(len(bp) > 0)
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
            f"{versus_backprop(f['speedup_seconds'], 'time')}; "
            f"{versus_backprop(f['speedup_flops'], 'FLOPs')}"
            if _finite(f["speedup_seconds"])
            else "no speedup over backprop is defined (backprop's median is ∞ or absent)"
        )
        out.append(
            f"Fastest {other}setting to the target: {name[f.name]}, median "
            f"{interval(f['seconds_median'], f['seconds_min'], f['seconds_max'])} s "
            f"({int(f['reached'])}/{int(f['runs'])} seeds); {speedup}."
        )
    elif len(others):
        bp_reached = len(bp) > 0 and _finite(bp.iloc[0]["seconds_median"])
        out.append(
            f"No setting{' other than backprop' if bp_reached else ''} reaches the target "
            f"{target} in the median over seeds (the table's `reached` column gives the seeds "
            "that did)."
        )
    modelled = _modelled(t, name)
    return [*out, modelled] if modelled else out


def _modelled(t: pd.DataFrame, name: Names) -> str | None:
    """The fastest other setting to the target in modelled seconds, cells marked noisy left out."""
    others = t[t["estimator"] != BACKPROP]
    finite = others[others["modelled_median"].apply(_finite)]
    if finite.empty:
        return None
    noisy = finite["noisy"].map(flag)
    if noisy.all():
        return ("No other setting's modelled time to target is named: every one that has one "
                "comes from a cost cell marked noisy.")  # fmt: skip
    m = finite[~noisy].loc[finite[~noisy]["modelled_median"].idxmin()]
    bp = t[t["estimator"] == BACKPROP]["modelled_median"]
    ref = (
        f", backprop's {fmt(bp.iloc[0])} s ({versus_backprop(m['speedup_modelled'], 'time')})"
        if _finite(m["speedup_modelled"])
        else ", no modelled speedup over backprop (its modelled median is ∞ or absent)"
    )
    among = " among cost cells not marked noisy" if noisy.any() else ""
    return (
        f"In modelled seconds ({MODELLED}), the fastest {other_word(len(bp) > 0)}setting "
        f"to the target{among} "
        f"is {name[m.name]}: median "
        f"{interval(m['modelled_median'], m['modelled_min'], m['modelled_max'])} s{ref}."
    )


def _findings(task: str, t: pd.DataFrame, style: Style, res: Results) -> list[str]:
    others = t[t["estimator"] != BACKPROP]
    name = {i: style.label(r["estimator"], r["params"]) for i, r in t.iterrows()}
    out: list[str | None] = []
    if "cosine" in t:
        legacy = "quality.csv" in res.legacy
        other = other_word(bool((t["estimator"] == BACKPROP).any()))
        out += [_closest(others, name, other), _bias(others, name), _work(others, name, legacy)]
    if "flop_ratio" in t:
        out += _cost_findings(others, name)
    if "seconds_median" in t and t["runs"].notna().any():
        out += _reach(task, t, name, res)
    out += break_even_findings(res.frame("diagnostics.csv"), task, style)
    return [s for s in out if s is not None]


def _quality_table(quality: pd.DataFrame, task: str, style: Style) -> str:
    total = quality[(quality["task"] == task) & (quality["layer"] == "total")]
    rows = []
    for r in over_seeds(total, [*KEYS, "checkpoint"]).to_dict("records"):
        rows.append([
            style.label(r["estimator"], r["params"]), int(r["checkpoint"]), cosine_cell(r),
            bias_cell(r), fmt(r["bias_p"], 2), fmt(r["rel_variance"]),
            interval(r["rel_mse"], r["rel_mse_lo"], r["rel_mse_hi"], MSE_RANGE),
            interval(r["work_mse"], r["work_mse_lo"], r["work_mse_hi"], MSE_RANGE),
            fmt(r["work_scale"]),
            int(r["seeds"]),
        ])  # fmt: skip
    headers = ["estimator", "checkpoint (step)", *QUALITY_HEADERS, "seeds"]
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)


SOURCE = (
    'quality.csv, `layer == "total"`, the task\'s last checkpoint, median over seeds '
    "(intervals: envelope of the seeds' 95% Student-t draw intervals; ± se: the largest of the "
    f"seeds' standard errors; * and bias p: the {BIAS_TEST}, * when p < {ALPHA}; work MSE "
    f"{WORK_MSE}, c* its median over seeds); cost.csv (ratios to backprop; FLOPs include "
    "linear algebra, elementwise counts one op per output element; time: 95% bootstrap "
    "interval over the paired repeats, (noisy) marks a cell whose time is not a finding; A/A: "
    "backprop timed against itself; s/step: mean over the timed steps); "
    'train.csv with the target `manifest.json["tasks"][task]["target_acc"]`: time and FLOPs '
    "to the first eval at or above it, median over seeds with a seed that never reached it "
    f"counted as ∞, [min, max] over seeds; modelled s = {MODELLED}; speedup = backprop's "
    "median / the setting's median."
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
        headers, rows = _rows(t, style)
        text = tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)
        (out / "tables").mkdir(parents=True, exist_ok=True)
        files = [f"tables/{slug(task)}.md"]
        (out / files[0]).write_text(f"# {task}\n\nSource: {SOURCE}\n\n{text}\n")
        if quality is not None and (quality["task"] == task).any():
            files.append(f"tables/{slug(task)}-quality.md")
            (out / files[1]).write_text(
                f"# {task}: gradient quality at each checkpoint\n\nSource: quality.csv, "
                f'`task == "{task}"`, `layer == "total"`, median over seeds (intervals: '
                f"envelope of the seeds' 95% draw intervals; bias test as in the task "
                f"table).\n\n{_quality_table(quality, task, style)}\n"
            )
        missing = [f for f in ("quality.csv", "cost.csv", "train.csv") if res.frame(f) is None]
        source = SOURCE + (f" Absent from the results: {', '.join(missing)}." if missing else "")
        sections.append(
            Section(title, QUESTION, source, files, _findings(task, t, style, res), body=text)
        )
    return sections
