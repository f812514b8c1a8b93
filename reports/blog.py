"""Table and figure: the SVD blog post's toy table beside our reproduction of it.

Reads `blog.csv`, which `python -m runners.study blog-table --out DIR` writes into a results
folder: one row per data set and seed with our numbers (svd-subspace against backprop from the
same initialisation) and the blog's own figures for that data set. Per data set, three
quantities are compared: the accuracy change (SVD minus backprop final validation accuracy),
the change of the first layer's weight-gradient FLOPs, and the change of one gradient
computation's time; ours as the mean and sample standard deviation over seeds, the blog's as it
printed them.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from reports.load import Results
from reports.section import Section, skip
from reports.style import PALETTE, Style, new_figure, save

TITLE = "Figure: the SVD blog post's table beside ours"
QUESTION = (
    "Does svd-subspace reproduce the blog's accuracy, gradient-FLOP and step-time changes on "
    "its four toy data sets?"
)
SOURCE = (
    "blog.csv (written by `python -m runners.study blog-table --out DIR`), every row; ours: mean ± "
    "sample standard deviation over seeds, per `dataset`, of `delta_acc` (svd_acc - "
    "baseline_acc), `wgrad_flop_change` (first layer's weight-gradient FLOPs of a projected step "
    "against a backprop step) and `step_time_change` (median time of one gradient computation, "
    "against backprop's); blog: `blog_svd_acc - blog_baseline_acc`, `blog_grad_flop_change`, "
    "`blog_time_change`. All in percent (accuracy change in percentage points)."
)
FILE = "blog.csv"
NAME = "blog-table"
# (our column, how the blog's number is made from its columns, panel title, y-axis label)
QUANTITIES: tuple[tuple[str, str, str, str], ...] = (
    ("delta_acc", "blog_svd_acc - blog_baseline_acc", "accuracy change, SVD - backprop",
     "change (percentage points)"),
    ("wgrad_flop_change", "blog_grad_flop_change", "1st-layer weight-gradient FLOPs",
     "change vs backprop (%)"),
    ("step_time_change", "blog_time_change", "time of one gradient computation",
     "change vs backprop (%)"),
)  # fmt: skip
# (short name, unit) of each quantity in the table and findings
SHORT = {"delta_acc": ("Δ acc", "pp"), "wgrad_flop_change": ("grad FLOPs", "%"),
         "step_time_change": ("step time", "%")}  # fmt: skip
OURS, BLOG = PALETTE[0], "#7f7f7f"


def compare(blog: pd.DataFrame) -> pd.DataFrame:
    """One row per data set (in file order): label, seeds, and for each quantity of
    `QUANTITIES` our mean and standard deviation over seeds and the blog's value, in percent.

    The standard deviation is the sample one (ddof 1), NaN for a single seed.
    """
    frame = blog.assign(**{f"blog_{ours}": blog.eval(expr) for ours, expr, *_ in QUANTITIES})
    groups = frame.groupby("dataset", sort=False)
    out = groups.agg(label=("label", "first"), seeds=("seed", "nunique"))
    for ours, *_ in QUANTITIES:
        out[f"{ours}_mean"] = 100 * groups[ours].mean()
        out[f"{ours}_std"] = 100 * groups[ours].std(ddof=1)
        out[f"{ours}_blog"] = 100 * groups[f"blog_{ours}"].mean()
    return out.reset_index()


def _spread(mean: float, std: float) -> str:
    """`+1.2 ± 0.3`, or the mean alone when the spread is undefined (one seed)."""
    return f"{mean:+.1f}" if math.isnan(std) else f"{mean:+.1f} ± {std:.1f}"


def table(rows: pd.DataFrame) -> str:
    """The comparison as a markdown pipe table, one row per data set."""
    headers = ["data set", "seeds"]
    for ours, *_ in QUANTITIES:
        name, unit = SHORT[ours]
        headers += [f"{name} ({unit}): ours", f"{name} ({unit}): blog"]
    body = []
    for r in rows.to_dict("records"):
        row = [f"{r['label']} (`{r['dataset']}`)", int(r["seeds"])]
        for ours, *_ in QUANTITIES:
            row += [_spread(r[f"{ours}_mean"], r[f"{ours}_std"]), f"{r[f'{ours}_blog']:+.1f}"]
        body.append(row)
    return tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True)


def _findings(rows: pd.DataFrame) -> list[str]:
    out = []
    for r in rows.to_dict("records"):
        parts = []
        for q, *_ in QUANTITIES:
            name, unit = SHORT[q]
            parts.append(f"{name} {_spread(r[f'{q}_mean'], r[f'{q}_std'])} {unit} "
                         f"(blog {r[f'{q}_blog']:+.1f} {unit})")  # fmt: skip
        out.append(f"On {r['label']} ({int(r['seeds'])} seeds): {'; '.join(parts)}.")
    for q, *_ in QUANTITIES[1:]:  # costs: lower is cheaper
        cheaper = int((rows[f"{q}_mean"] <= rows[f"{q}_blog"]).sum())
        out.append(
            f"Our mean {SHORT[q][0]} change is at or below the blog's on {cheaper}/{len(rows)} "
            "data sets."
        )
    return out


def _figure(rows: pd.DataFrame, out: Path) -> list[str]:
    fig, axes = new_figure(len(QUANTITIES), width=4.8, height=3.8)
    x = np.arange(len(rows))
    names = [textwrap.fill(label, 16, break_on_hyphens=False) for label in rows["label"]]
    lo, hi = int(rows["seeds"].min()), int(rows["seeds"].max())
    seeds = f"{lo}" if lo == hi else f"{lo}-{hi}"
    for ax, (q, _, title, unit) in zip(axes, QUANTITIES, strict=True):
        std = rows[f"{q}_std"].fillna(0).to_numpy()
        ax.bar(x - 0.2, rows[f"{q}_mean"], 0.4, yerr=std, capsize=3, color=OURS,
               label=f"ours: mean ± std over {seeds} seeds")  # fmt: skip
        ax.bar(x + 0.2, rows[f"{q}_blog"], 0.4, color=BLOG, label="blog post")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, names, fontsize="small")
        ax.set(title=title, xlabel="data set", ylabel=unit)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", fontsize="small", ncols=2)
    return save(fig, out, NAME)


def build(res: Results, style: Style, out: Path) -> list[Section]:
    blog = res.frame(FILE)
    if blog is None:
        return [skip(TITLE, QUESTION, SOURCE,
                     f"the results hold no {FILE} (write it with `python -m runners.study "
                     f"blog-table --out {res.folder}`)")]  # fmt: skip
    rows = compare(blog)
    text = table(rows)
    files = [*_figure(rows, out), f"tables/{NAME}.md"]
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / files[-1]).write_text(f"# {TITLE.removeprefix('Figure: ')}\n\nSource: {SOURCE}\n\n"
                                 f"{text}\n")  # fmt: skip
    return [Section(TITLE, QUESTION, SOURCE, files, _findings(rows), body=text)]
