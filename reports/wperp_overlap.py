"""Figure: overlap of the true dl/ds with W-perp's top-k subspace vs k (Wang et al., Fig. 1).

Reads `wperp_overlap.csv` (`python -m runners.study wperp-overlap --out DIR`): per width, hidden
layer and k, the mean over examples of ||V_k^T dl/ds||^2 / ||dl/ds||^2 and its 95% interval.
One panel per task and width, one line per layer, the interval as a band.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports.load import Results
from reports.section import Section, skip
from reports.style import PALETTE, Style, fmt, new_figure, save

FILE = "wperp_overlap.csv"
HOW = "python -m runners.study wperp-overlap --out DIR"
LEVEL = 0.9  # the overlap the findings ask each layer to reach
PAPER_K = 10  # Wang, Markou & Campbell: about k = 10 captures most of dl/ds
TITLE = "Figure: overlap of dl/ds with W-perp's top-k subspace (Wang et al., Fig. 1)"
QUESTION = (
    f"Does the true dl/ds lie mostly in the top-k subspace W-perp guesses in, k ≈ {PAPER_K} "
    "capturing most of it at widths 128 and 512, as Wang, Markou & Campbell's Figure 1 shows?"
)
SOURCE = (
    f"{FILE} (written by `{HOW}`), every row: per width, hidden layer and k, the mean over "
    "examples (each weighted equally) of ||V_k^T dl/ds||² / ||dl/ds||², V_k the top-k right "
    "singular vectors of W_next diag(φ'(s)) (fg-wperp's own basis), after `steps` backprop "
    "steps; 95% Student-t interval over the examples, clipped to [0, 1]."
)
Panel = tuple[str, int, int]  # task, width, steps


def first_k(g: pd.DataFrame, column: str) -> int | None:
    """The smallest k whose `column` is at least `LEVEL` (None when no k reaches it)."""
    reached = g[g[column] >= LEVEL]
    return int(reached["k"].min()) if len(reached) else None


def reach(g: pd.DataFrame) -> str:
    """ "hidden.0 at k = 7 [6, 8]": the k of the mean, the k of the interval's upper and lower
    ends (the earliest and latest k the interval allows), or that it does not by the last k."""
    layer, top = g["layer"].iloc[0], int(g["k"].max())
    mean, early, late = first_k(g, "overlap"), first_k(g, "hi"), first_k(g, "lo")
    if mean is None:
        return f"{layer} does not by k = {top} ({fmt(g['overlap'].max())} there)"
    late_text = str(late) if late is not None else f"> {top}"
    return f"{layer} at k = {mean} [{early}, {late_text}]"


def examples(g: pd.DataFrame) -> str:
    """The examples averaged over: one number, or `lo–hi` when layers kept different counts."""
    lo, hi = int(g["examples"].min()), int(g["examples"].max())
    return str(lo) if lo == hi else f"{lo}–{hi}"


def findings(rows: pd.DataFrame) -> list[str]:
    out = []
    reached, total = 0, 0
    for (task, width, steps), g in rows.groupby(["task", "width", "steps"], sort=False):
        layers = [layer for _, layer in g.groupby("layer", sort=False)]
        out.append(
            f"{task} width {width} ({steps} backprop steps, {examples(g)} examples): the "
            f"overlap reaches {LEVEL:g} for "
            + "; ".join(reach(layer) for layer in layers)
            + " (in brackets: the k at which the 95% interval's upper and lower ends reach it)."
        )
        total += len(layers)
        reached += sum(
            (k := first_k(layer, "overlap")) is not None and k <= PAPER_K for layer in layers
        )
    out.append(
        f"k ≤ {PAPER_K} captures at least {LEVEL:g} of ||dl/ds||² on average on {reached} of "
        f"{total} layer-width pairs."
    )
    return out


def panel(g: pd.DataFrame) -> Panel:
    """The task, width and steps of one panel's rows."""
    first = g.iloc[0]
    return str(first["task"]), int(first["width"]), int(first["steps"])


def figure(rows: pd.DataFrame, out: Path) -> list[str]:
    panels = [(panel(g), g) for _, g in rows.groupby(["task", "width", "steps"], sort=False)]
    fig, axes = new_figure(len(panels), width=4.8, height=3.6, cols=2)
    for ax, ((task, width, steps), g) in zip(axes, panels, strict=True):
        for i, (layer, line) in enumerate(g.groupby("layer", sort=False)):
            colour = PALETTE[i % len(PALETTE)]
            line = line.sort_values("k")
            ax.plot(line["k"], line["overlap"], color=colour, label=str(layer), marker=".")
            ax.fill_between(line["k"], line["lo"], line["hi"], color=colour, alpha=0.2, lw=0)
        ax.axhline(LEVEL, color="grey", lw=0.8, ls="--")
        ax.set_xlim(1, int(g["k"].max()))
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("k (dimension of the top-k subspace)")
        ax.set_ylabel("overlap ||V_k^T dl/ds||² / ||dl/ds||²")
        ax.set_title(f"{task}, width {width}, step {steps}", fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(title="layer", fontsize="small", loc="lower right")
    return save(fig, out, "wperp-overlap")


def build(res: Results, style: Style, out: Path) -> list[Section]:
    rows = res.frame(FILE)
    if rows is None or rows.empty:
        return [skip(TITLE, QUESTION, SOURCE, f"the results hold no {FILE} (write it with "
                                              f"`{HOW}`)")]  # fmt: skip
    return [Section(TITLE, QUESTION, SOURCE, figure(rows, out), findings(rows))]
