"""Shared look of the reports: estimator labels and colours, number format, figure files.

Figures are drawn on `matplotlib.figure.Figure` objects (the Agg renderer for PNG, the SVG
backend for SVG), never through pyplot, so no window opens and no global figure state is kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from scipy.stats import t as student_t

from tasks.labels import short_labels

BACKPROP = "backprop"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f")  # fmt: skip
DPI = 110
LINE_STYLES = ("-", "--", ":", "-.")  # cycled to tell apart lines of one colour


@dataclass(frozen=True)
class Style:
    """Short labels (`tasks.labels.short_labels`, which the sweep's terminal output uses too)
    and fixed colours for every estimator setting of a results folder."""

    labels: dict[tuple[str, str], str]
    colours: dict[str, str]

    @classmethod
    def of(cls, keys: Iterable[tuple[str, str]]) -> Style:
        """Labels and colours for (estimator, params) keys, in order of first appearance."""
        labels = short_labels(keys)
        colours, others = {}, iter(PALETTE * (1 + len(labels) // len(PALETTE)))
        for label in labels.values():
            colours[label] = "black" if label == BACKPROP else next(others)
        return cls(labels, colours)

    def label(self, estimator: str, params: str) -> str:
        return self.labels[(estimator, params)]

    def colour(self, label: str) -> str:
        return self.colours.get(label, "grey")


def fmt(value: float, digits: int = 3) -> str:
    """A number to `digits` significant digits; infinity as "∞", NaN as "-"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}g}"


MSE_RANGE = (0.0, math.inf)  # a mean squared error is never negative
ACC_RANGE = (0.0, 1.0)  # an accuracy is a fraction
COSINE_RANGE = (-1.0, 1.0)
FLOOR_DECADES = 8  # log axes show at most this many powers of ten below their largest value


def clip(lo: float, hi: float, within: tuple[float, float]) -> tuple[float, float]:
    """An interval's ends clipped to the quantity's range `within` (an absent end stays absent):
    a Student-t interval of a mean of non-negative values can reach below 0, the quantity not."""
    low, high = within
    return (lo if math.isnan(lo) else min(max(lo, low), high),
            hi if math.isnan(hi) else min(max(hi, low), high))  # fmt: skip


def interval(
    value: float, lo: float, hi: float, within: tuple[float, float] = (-math.inf, math.inf)
) -> str:
    """A value with its interval clipped to `within`, "0.4 [0.2, 0.6]"; an absent end is "-"."""
    lo, hi = clip(float(lo), float(hi), within)
    return f"{fmt(value)} [{fmt(lo)}, {fmt(hi)}]"


def log_floor(values: Iterable[float], decades: int = FLOOR_DECADES) -> float | None:
    """The lower limit of a log axis showing `values`: the smallest positive finite value, but
    at most `decades` powers of ten below the largest (float noise, ~1e-13 of a gradient, must
    not stretch the axis); None when no value is positive and finite."""
    finite = [v for v in values if math.isfinite(v) and v > 0]
    if not finite:
        return None
    return max(min(finite), max(finite) / 10**decades)


def t95(n: int) -> float:
    """t_{0.975, n-1}: a 95% Student-t interval of a mean over n samples is mean ± t95(n) times
    its standard error sd / sqrt(n) (sd's denominator n - 1); NaN for n < 2. It holds at the few
    seeds a sweep runs, where the normal 1.96 would be too narrow."""
    return float(student_t.ppf(0.975, n - 1)) if n >= 2 else math.nan


def half_width(values: np.ndarray) -> float:
    """Half-width of the 95% Student-t interval of the mean of `values` (NaN for one value, or
    for values not all finite: an infinite mean has no interval)."""
    n = len(values)
    if n < 2 or not np.all(np.isfinite(values)):
        return math.nan
    return t95(n) * float(np.std(values, ddof=1)) / math.sqrt(n)


def apart(lo_a: float, hi_a: float, lo_b: float, hi_b: float) -> bool:
    """Whether intervals a and b are disjoint (False when an end is absent)."""
    return bool(hi_a < lo_b or hi_b < lo_a)


def slug(name: str) -> str:
    """A file-name-safe form of a name: `mlp-mnist1d:width=512` -> `mlp-mnist1d_width_512`."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_")


def new_figure(
    panels: int, width: float = 4.6, height: float = 3.4, cols: int = 3
) -> tuple[Figure, list[Axes]]:
    """A figure with `panels` axes in rows of at most `cols`."""
    cols = min(panels, cols)
    rows = math.ceil(panels / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def save(fig: Figure, folder: Path, name: str) -> list[str]:
    """Write `name`.png and `name`.svg under `folder/figures`; their paths relative to `folder`.
    The SVG keeps its words as `<text>` (not glyph outlines), so a page or a test can read the
    axis labels; a viewer draws them in its own sans-serif font."""
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    files = []
    with matplotlib.rc_context({"svg.hashsalt": "cheapgrad", "svg.fonttype": "none"}):
        for ext, metadata in (("png", {"Software": None}), ("svg", {"Date": None})):
            fig.savefig(folder / "figures" / f"{name}.{ext}", dpi=DPI, metadata=metadata)
            files.append(f"figures/{name}.{ext}")
            fig.set_layout_engine("none")  # keep the layout the first save computed
    return files


def figure_legend(fig: Figure, axes: Iterable[Axes], cols: int = 3) -> None:
    """One legend below all panels, each label once (panels share their estimators)."""
    entries: dict[str, Artist] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(entries.values(), entries.keys(), loc="outside lower center",
                   fontsize="small", ncols=min(cols, len(entries)))  # fmt: skip


def log_axis(ax: Axes, axis: str = "y", scale: str = "log", **kwargs: float) -> None:
    """A log (or symlog) scale on `axis` with plain tick labels (`0.5`, `20`; no mathtext,
    which is slow to lay out). So that a narrow axis still has numbers on it, minor ticks are
    labelled when fewer than two powers of ten are in view: 2, 3 and 5 x 10^n beside one, all
    of them when none is."""
    which = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)(scale, **kwargs)
    which.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))

    def minor(value: float, _: int) -> str:
        lo, hi = which.get_view_interval()
        if value <= 0 or lo <= 0:
            return ""
        powers = math.floor(math.log10(hi)) - math.ceil(math.log10(lo)) + 1  # labelled majors
        mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
        return f"{value:g}" if powers == 0 or (powers == 1 and mantissa in (2, 3, 5)) else ""

    which.set_minor_formatter(FuncFormatter(minor))


def log_if_wide(ax: Axes, values: Iterable[float], axis: str = "y", ratio: float = 20.0) -> None:
    """Use a log scale on `axis` when the positive finite values span more than `ratio`."""
    finite = [v for v in values if math.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) > ratio:
        log_axis(ax, axis)
