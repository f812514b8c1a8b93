"""Build a report folder from a results folder: tables, figures and `index.md`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reports import (
    baselines,
    blog,
    claims,
    curves,
    cv_predicted,
    cv_vit_digits,
    forward_gradients,
    html,
    layers,
    lowrank_layer,
    memory_time,
    paper_figures,
    profile,
    quality_draws,
    ranking,
    scaling,
    sparse,
    sparse_vjp_study,
    sparse_vjp_tradeoff,
    subspace,
    svd,
    tables,
    widths,
    wperp_overlap,
)
from reports.index import render
from reports.load import ReportError, Results, load_results
from reports.section import Section
from reports.style import BACKPROP, Style

Builder = Callable[[Results, Style, Path], list[Section]]
# Sections over the sweep's tables (and the blog table), each built or skipped with a reason.
BUILDERS: tuple[Builder, ...] = (
    claims.build,
    ranking.build,
    tables.build,
    baselines.build,
    memory_time.build,
    scaling.build,
    curves.build,
    layers.build,
    subspace.build,
    widths.build,
    sparse.build,
    svd.build,
    blog.build,
    paper_figures.build,
    profile.build,
)
# Sections over the studies' tables (`fg_*.csv`, ...), built only where one of them is.
STUDY_BUILDERS: tuple[tuple[str, Builder], ...] = (
    ("fg_", forward_gradients.build),
    ("quality_draws.", quality_draws.build),
    ("cv_predicted_", cv_predicted.build),
    ("cv_vit_digits_", cv_vit_digits.build),
    ("sparse_vjp_tradeoff.", sparse_vjp_tradeoff.build),
    ("sparse_vjp_cost.", sparse_vjp_study.build),
    ("sparse_vjp_variance.", sparse_vjp_study.build),
    ("lowrank_layer.", lowrank_layer.build),
    ("wperp_overlap.", wperp_overlap.build),
)
GENERATED = ("index.md", "index.html", "figures/*.png", "figures/*.svg", "tables/*.md")


def default_out(results: Path) -> Path:
    """`reports/<name of the results folder>`, relative to the working directory."""
    return Path("reports") / results.resolve().name


def style_of(res: Results) -> Style:
    """Labels and colours for every estimator setting in the results, backprop first."""
    keys = [k for df in res.frames.values()
            for k in zip(df["estimator"], df["params"], strict=True)]  # fmt: skip
    keys = sorted(dict.fromkeys(keys), key=lambda k: k[0] != BACKPROP)
    return Style.of(keys)


def build_reports(results: Path, out: Path | None = None) -> Path:
    """Write the report of `results` to `out` (default `reports/<results folder name>/`).

    Reads only the results folder's tidy CSVs and manifest.json. Files of an earlier report in
    `out` (index.md, index.html, figures/*.png|svg, tables/*.md) are replaced; nothing else
    there is touched. Returns the path of `index.md` (`index.html`, the same report as one
    self-contained page, is beside it). Raises `ReportError` (one line) for a folder that
    is missing or not a results folder, or an `out` that is not a folder.
    """
    res = load_results(results)
    out = out or default_out(results)
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out} is a file; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    for pattern in GENERATED:
        for old in out.glob(pattern):
            old.unlink()
    style = style_of(res)
    builders = [*BUILDERS]
    for prefix, build in STUDY_BUILDERS:
        if any(f.startswith(prefix) for f in res.others) and build not in builders:
            builders.append(build)
    sections = [section for build in builders for section in build(res, style, out)]
    index = out / "index.md"
    index.write_text(render(res, style, sections))
    html.write_page(index)
    return index
