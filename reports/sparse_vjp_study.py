"""Tables: sparse-vjp's backward and step time against its FLOPs, and its per-layer variance.

Reads `sparse_vjp_cost.csv` and `sparse_vjp_variance.csv`, which
`python -m runners.study sparse-vjp --out DIR` writes: per model and sparse-vjp variant the
ratios of backward and step time and FLOPs against dense backprop on the same batch (times from
one interleaved run), and per task, layer and variant the relative variance of R draws at
initialisation. (`reports/sparse.py` is another section: the keep trade-off in a sweep's rows.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from reports.load import Results
from reports.section import Section, skip, write_table
from reports.style import Style, fmt

COST, VARIANCE = "sparse_vjp_cost.csv", "sparse_vjp_variance.csv"
HOW = "python -m runners.study sparse-vjp --out DIR"
BWD_GOAL, STEP_GOAL = 0.45, 1.25  # issue 6: backward time ratio; step time / step FLOP ratio
COST_TITLE = "Table: sparse-vjp backward and step time against FLOPs"
COST_QUESTION = (
    f"Does sparse-vjp's FLOP saving become a time saving: backward time at most {BWD_GOAL}× "
    "dense backprop's (ideal: the keep fraction), step time ratio at most "
    f"{STEP_GOAL}× the step FLOP ratio?"
)
COST_SOURCE = (
    f"{COST} (written by `{HOW}`), every row: sparse-vjp over dense backprop on the same seeded "
    "model and batch; time ratios of median times over `repeats` interleaved rounds (the "
    "backward alone timed on a graph built once and kept), FLOP ratios from FlopCounterMode "
    "(backward FLOPs = step's minus a plain forward's); time / FLOP = step time ratio over step "
    "FLOP ratio."
)
VAR_TITLE = "Table: sparse-vjp per-layer relative variance"
VAR_QUESTION = (
    "How noisy is each layer's sparse-vjp gradient, and does the minimal-variance sketch "
    "(minvar) lower that against the uniform one?"
)
VAR_SOURCE = (
    f"{VARIANCE} (written by `{HOW}`), every row: relative variance "
    "sum_r ||g_r - m||² / ((R - 1) ||g||²) of R = `draws` draws at initialisation (seed 0, the "
    "task's batch size), per layer (`total`: the whole gradient), per variant (axis, sketch, keep)."
)


def _variant(r: pd.Series) -> str:
    return f"{r['axis']}, {r['sketch']}, keep {r['keep']:g}"


def cost_table(rows: pd.DataFrame) -> str:
    """The cost rows as a markdown pipe table, in file order."""
    body = [
        [r["task"], int(r["batch"]), _variant(r), fmt(r["dense_bwd_ms"]), fmt(r["bwd_time_ratio"]),
         fmt(r["bwd_flop_ratio"]), fmt(r["step_time_ratio"]), fmt(r["step_flop_ratio"]),
         fmt(r["time_flop_ratio"]), int(r["repeats"])]
        for _, r in rows.iterrows()
    ]  # fmt: skip
    headers = ["task", "batch", "sparse-vjp", "dense bwd (ms)", "bwd time ×", "bwd FLOPs ×",
               "step time ×", "step FLOPs ×", "time / FLOP ×", "rounds"]  # fmt: skip
    return tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True)


def cost_findings(rows: pd.DataFrame) -> list[str]:
    n = len(rows)
    bwd = int((rows["bwd_time_ratio"] <= BWD_GOAL).sum())
    step = int((rows["time_flop_ratio"] <= STEP_GOAL).sum())
    best = rows.loc[rows["time_flop_ratio"].idxmin()]
    where = zip(rows["device"], rows["threads"], strict=True)
    devices = ", ".join(dict.fromkeys(f"{d} ({t} threads)" for d, t in where))
    return [
        f"Backward time is at most {BWD_GOAL}× dense on {bwd}/{n} rows (backward time "
        f"{fmt(rows['bwd_time_ratio'].min())}–{fmt(rows['bwd_time_ratio'].max())}× for backward "
        f"FLOPs {fmt(rows['bwd_flop_ratio'].min())}–{fmt(rows['bwd_flop_ratio'].max())}×).",
        f"The step time ratio is at most {STEP_GOAL}× the step FLOP ratio on {step}/{n} rows; "
        f"closest to its FLOP saving: {best['task']} (batch {int(best['batch'])}, "
        f"{_variant(best)}), step time {fmt(best['step_time_ratio'])}× for step FLOPs "
        f"{fmt(best['step_flop_ratio'])}×.",
        f"Measured on {devices}, medians of {int(rows['repeats'].min())}"
        f"–{int(rows['repeats'].max())} interleaved rounds.",
    ]


def variance_table(rows: pd.DataFrame) -> str:
    """One row per task and layer (file order), one column per variant."""
    rows = rows.assign(variant=rows.apply(_variant, axis=1), layer=rows["layer"].astype(str))
    variants = list(dict.fromkeys(rows["variant"]))
    value = {(r.task, r.layer, r.variant): r.rel_variance for r in rows.itertuples()}
    keys = dict.fromkeys(zip(rows["task"], rows["layer"], strict=True))
    body = [[task, layer, *(fmt(value.get((task, layer, v), float("nan"))) for v in variants)]
            for task, layer in keys]  # fmt: skip
    return tabulate(body, headers=["task", "layer", *variants], tablefmt="pipe",
                    disable_numparse=True)  # fmt: skip


def variance_findings(rows: pd.DataFrame) -> list[str]:
    out = []
    for task, group in rows.groupby("task", sort=False):
        total = group[group["layer"].astype(str) == "total"]
        totals = "; ".join(f"{_variant(r)}: {fmt(r['rel_variance'])}" for _, r in total.iterrows())
        parts = [f"On {task} ({int(group['draws'].iloc[0])} draws) the whole gradient's relative "
                 f"variance is {totals}"]  # fmt: skip
        layers = group[group["layer"].astype(str) != "total"]
        for (axis, keep), same in layers.groupby(["axis", "keep"], sort=False):
            by = same.pivot_table(index="layer", columns="sketch", values="rel_variance")
            if {"uniform", "minvar"} <= set(by.columns):
                lower = int((by["minvar"] < by["uniform"]).sum())
                parts.append(f"minvar is below uniform on {lower}/{len(by)} layers "
                             f"(axis {axis}, keep {keep:g})")  # fmt: skip
        out.append("; ".join(parts) + ".")
    return out


def _section(
    res: Results,
    out: Path,
    file: str,
    name: str,
    heading: tuple[str, str, str],
    draw: tuple[Callable[[pd.DataFrame], str], Callable[[pd.DataFrame], list[str]]],
) -> Section:
    """The section of one table: skipped when the file is absent, else its table and findings."""
    title, question, source = heading
    rows = res.frame(file)
    if rows is None:
        return skip(title, question, source, f"the results hold no {file} (write it with `{HOW}`)")
    table, findings = draw
    text = table(rows)
    files = [write_table(out, name, title, source, text)]
    return Section(title, question, source, files, findings(rows), body=text)


def build(res: Results, style: Style, out: Path) -> list[Section]:
    return [
        _section(res, out, COST, "sparse-vjp-cost", (COST_TITLE, COST_QUESTION, COST_SOURCE),
                 (cost_table, cost_findings)),
        _section(res, out, VARIANCE, "sparse-vjp-variance", (VAR_TITLE, VAR_QUESTION, VAR_SOURCE),
                 (variance_table, variance_findings)),
    ]  # fmt: skip
