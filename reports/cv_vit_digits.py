"""Figure and tables: validation accuracy against wall-clock time, backprop against cv-predicted
at equal training time, from the `cv_vit_digits_*.csv` files
(`python -m runners.study cv-vit-digits --out DIR`).

Per seed, backprop trained for its steps first and its training time was each cv-predicted run's
time budget. The figure draws every learner's accuracy against training seconds, mean and
standard error over seeds (`reports.curves.mean_curve`). The tables give, mean ± standard error
over seeds: accuracy by step, accuracy at fractions of the budget, time to each target (over the
seeds that reached it) and the alignment against the break-even alignment; the findings say in
how many seeds each learner reached each target sooner than backprop.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from reports.curves import mean_curve
from reports.cv_predicted import absent, table
from reports.load import Results
from reports.section import Section, skip, write_table
from reports.style import BACKPROP, LINE_STYLES, PALETTE, Style, figure_legend, fmt, new_figure
from reports.style import save as save_figure

EVALS, BUDGET = "cv_vit_digits_evals.csv", "cv_vit_digits_budget.csv"
REACH, RUNS = "cv_vit_digits_reach.csv", "cv_vit_digits_runs.csv"
STUDY = "cv-vit-digits"
NAME = "cv-vit-digits"

FIG_TITLE = "Figure: accuracy vs wall-clock time, backprop vs cv-predicted at equal time"
FIG_QUESTION = (
    "Does predicting most of each batch's gradient (cv-predicted) reach a validation accuracy "
    "sooner in wall-clock time than backprop?"
)
FIG_SOURCE = (
    f"{EVALS}, every eval row (`seconds` counts training steps only); line: mean over seeds "
    "(each seed holds its last eval's accuracy until the next), band: ± one standard error; a "
    "curve ends where its shortest seed's run ends; dashed lines: the targets of "
    f"{REACH}. Each cv-predicted run's time budget is backprop's training time at its seed."
)
TAB_TITLE = "Table: time to target, accuracy at the time budget, alignment vs break-even"
TAB_QUESTION = (
    "How soon does each learner reach the targets, how accurate is it at fractions of "
    "backprop's training time, and is its predictor aligned beyond break-even?"
)
TAB_SOURCE = (
    f"{REACH} (time to target: `measurements.schema.to_target`, mean over the seeds that "
    f"reached it), {BUDGET} (accuracy of the last eval within a fraction of the budget), "
    f"{RUNS} (ms per step, steps, mean alignment and residual over training; time ratio: a "
    "run's ms per step over backprop's at the same seed, break-even (time) at that ratio and "
    f"beta = 1, break-even (nominal) at 1 - 2f/3), {EVALS} (accuracy by step, steps every "
    "seed of a learner evaluated, up to backprop's last). Mean ± standard error over seeds."
)


def mean_se(values: pd.Series) -> str:
    """`mean ± standard error` of the values that are not NaN: the mean alone for one value or
    an infinite mean (∞), `-` for none."""
    v = values.astype(float).dropna()
    if not len(v):
        return "-"
    mean = float(v.mean())
    if len(v) == 1 or not math.isfinite(mean):
        return fmt(mean)
    return f"{fmt(mean)} ± {fmt(float(v.std(ddof=1)) / math.sqrt(len(v)), 2)}"


def _stride(last: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that puts at most 8 steps between 0 and last."""
    for power in range(12):
        for base in (1, 2, 5):
            if last / (base * 10**power) <= 8:
                return base * 10**power
    return last or 1


def by_step(evals: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and seconds by step, per learner: steps every seed evaluated, up to backprop's
    last step, every `_stride` steps."""
    bp = evals[evals["learner"] == BACKPROP]
    last = int(bp["step"].max()) if len(bp) else int(evals["step"].max())
    stride = _stride(last)
    rows = []
    for learner, runs in evals.groupby("learner", sort=False):
        seeds = runs["seed"].nunique()
        for step, at in runs[runs["step"] % stride == 0].groupby("step"):
            if step <= last and at["seed"].nunique() == seeds:
                rows.append({"learner": learner, "step": int(step),
                             "seconds": mean_se(at["seconds"]),
                             "val_acc": mean_se(at["val_acc"])})  # fmt: skip
    return pd.DataFrame(rows, columns=["learner", "step", "seconds", "val_acc"])


def at_budget(budget: pd.DataFrame) -> pd.DataFrame:
    """Accuracy at each fraction of the budget, one row per learner."""
    frame = budget.pivot_table(index="learner", columns="budget_fraction", values="val_acc",
                               aggfunc=mean_se, sort=False)  # fmt: skip
    frame.columns = [f"{b:g} x budget" for b in frame.columns]
    return frame.reset_index()


def reach_table(reach: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Time to each target (seeds that reached it) and reached/seeds, then ms/step and steps."""
    rows = []
    for learner, r in reach.groupby("learner", sort=False):
        row: dict[str, object] = {"learner": learner}
        for target, t in r.groupby("target"):
            row[f"s to {target:g}"] = mean_se(t["seconds"][t["reached"].astype(bool)])
            row[f"reached {target:g}"] = f"{int(t['reached'].astype(bool).sum())}/{len(t)}"
        own = runs[runs["learner"] == learner]
        row["ms/step"] = mean_se(own["ms_per_step"])
        row["steps"] = int(own["steps"].max()) if len(own) else "-"
        rows.append(row)
    return pd.DataFrame(rows)


def alignment_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Alignment and residual over training against the break-even, per cv-predicted learner."""
    rows = []
    for learner, r in runs[runs["learner"] != BACKPROP].groupby("learner", sort=False):
        rows.append({"learner": learner, "alignment": mean_se(r["alignment"]),
                     "residual": mean_se(r["residual"]), "time ratio": mean_se(r["time_ratio"]),
                     "break-even (time)": mean_se(r["break_even_time"]),
                     "break-even (nominal)": mean_se(r["break_even_nominal"])})  # fmt: skip
    return pd.DataFrame(rows)


def wins(reach: pd.DataFrame) -> list[str]:
    """Per learner and target: in how many seeds it reached the target sooner than backprop."""
    bp = reach[reach["learner"] == BACKPROP].set_index(["seed", "target"])["seconds"]
    out = []
    for (learner, target), r in reach[reach["learner"] != BACKPROP].groupby(
        ["learner", "target"], sort=False
    ):
        theirs = bp.reindex(list(zip(r["seed"], r["target"], strict=True))).to_numpy(float)
        ours = r["seconds"].to_numpy(float)
        sooner = int((np.isfinite(ours) & (np.isnan(theirs) | (ours < theirs))).sum())
        out.append(
            f"{learner} reaches {target:g} sooner than backprop in {sooner}/{len(r)} seeds "
            f"(mean seconds to it where reached: {mean_se(r['seconds'])}; backprop "
            f"{mean_se(pd.Series(theirs))})."
        )
    return out


def _figure(evals: pd.DataFrame, targets: list[float], out: Path) -> tuple[list[str], list[str]]:
    """The figure's files and findings (final accuracy per learner against backprop's)."""
    tasks = list(dict.fromkeys(evals["task"]))
    fig, axes = new_figure(len(tasks), width=6.0, height=4.0)
    findings = []
    for ax, task in zip(axes, tasks, strict=True):
        colours = iter(PALETTE)
        finals = {}
        for learner, rows in evals[evals["task"] == task].groupby("learner", sort=False):
            runs = [r for _, r in rows.groupby("seed") if r["val_acc"].notna().any()]
            if not runs:
                continue
            colour = "black" if learner == BACKPROP else next(colours)
            grid, mean, se = mean_curve(runs)
            ax.plot(grid, mean, color=colour, label=learner)
            if len(runs) > 1:
                ax.fill_between(grid, mean - se, mean + se, color=colour, alpha=0.2, lw=0)
            last = pd.Series([r.dropna(subset=["val_acc"])["val_acc"].iloc[-1] for r in runs])
            finals[learner] = f"{mean_se(last)} over {len(runs)} seeds"
        for target, style in zip(targets, LINE_STYLES[1:] * len(targets), strict=False):
            ax.axhline(target, color="grey", ls=style, lw=1, label=f"target {target:g}")
        ax.set(title=task, xlabel="training time (s, evaluation excluded)",
               ylabel="validation accuracy")  # fmt: skip
        ax.grid(alpha=0.3)
        findings.append(
            f"On {task}, final validation accuracy at the end of the time budget: "
            + "; ".join(f"{k} {v}" for k, v in finals.items())
            + "."
        )
    figure_legend(fig, axes, cols=3)
    return save_figure(fig, out, NAME), findings


def _tables(res: Results, out: Path) -> Section:
    frames = {f: res.frame(f) for f in (REACH, RUNS, BUDGET, EVALS)}
    missing = [f for f, df in frames.items() if df is None]
    if missing:
        return skip(TAB_TITLE, TAB_QUESTION, TAB_SOURCE, absent(missing[0], STUDY, res.folder))
    reach, runs, budget, evals = (frames[f] for f in (REACH, RUNS, BUDGET, EVALS))
    assert reach is not None and runs is not None and budget is not None and evals is not None
    budget_s = runs.groupby("seed")["budget_s"].first()
    parts = [
        ("Time to reach a validation accuracy (mean over the seeds that reached it):",
         reach_table(reach, runs)),
        (f"Validation accuracy at fractions of the time budget (backprop's training time, "
         f"{mean_se(budget_s)} s):", at_budget(budget)),
        ("Alignment cos(g_pred(C), g_true(C)) over training vs break-even:",
         alignment_table(runs)),
        ("Validation accuracy by step (first steps of each run):", by_step(evals)),
    ]  # fmt: skip
    body = "\n\n".join(
        f"**{caption}**\n\n{table(frame, [(c, c) for c in frame.columns])}"
        for caption, frame in parts
    )
    files = [write_table(out, NAME, TAB_TITLE, TAB_SOURCE, body)]
    findings = wins(reach)
    for r in alignment_table(runs).to_dict("records"):
        findings.append(
            f"{r['learner']}: alignment {r['alignment']} against break-even "
            f"{r['break-even (time)']} at its measured time ratio {r['time ratio']}."
        )
    return Section(TAB_TITLE, TAB_QUESTION, TAB_SOURCE, files, findings, body=body)


def build(res: Results, style: Style, out: Path) -> list[Section]:
    evals = res.frame(EVALS)
    if evals is None:
        figure = skip(FIG_TITLE, FIG_QUESTION, FIG_SOURCE, absent(EVALS, STUDY, res.folder))
    else:
        reach = res.frame(REACH)
        targets = sorted(reach["target"].unique()) if reach is not None else []
        files, findings = _figure(evals, [float(t) for t in targets], out)
        figure = Section(FIG_TITLE, FIG_QUESTION, FIG_SOURCE, files, findings)
    return [figure, _tables(res, out)]
