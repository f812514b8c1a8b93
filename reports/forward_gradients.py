"""Tables: forward-gradient cost, memory, quality after training, Newton-Schulz vs SVD, draws.

Reads the files `python -m runners.study forward-gradients --out DIR` writes: `fg_cost.csv`
(pass and estimate time and FLOPs against a plain forward, timed interleaved in one run),
`fg_memory.csv` (peak bytes of one estimate against backprop's), `fg_quality.csv` and
`fg_overlap.csv` (R draws against the exact gradient after backprop training; the subspace
overlap of fg-wperp-ns with fg-wperp's SVD), `fg_ns.csv` (Newton-Schulz against batched SVD) and
`fg_draws.csv` (R draws in one call against R single ones, drawn as `reports/quality_draws.py`
draws `quality_draws.csv`). One section per file present; one skipped section when none is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from reports.load import Results
from reports.quality_draws import GOAL, devices, draws_findings, draws_table, span
from reports.section import Section, skip, write_table
from reports.style import Style, fmt

HOW = "python -m runners.study forward-gradients --out DIR"
JVP = "torch.func.jvp, weights"
GOALS = {"fg-activity": 2.3, "fg-weight": 3.5}  # issue 4: tangent pass / forward, at most


def _pipe(body: list[list[object]], headers: list[str]) -> str:
    return tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True)


# ---- cost


def cost_table(rows: pd.DataFrame) -> str:
    body = [
        [r["task"], int(r["batch"]), r["estimator"], fmt(r["pass_ratio"]), fmt(r["noise_share"]),
         fmt(r["pass_less_noise_ratio"]), fmt(r["estimate_ratio"]), fmt(r["flop_ratio"]),
         fmt(r["subspace_share"]), fmt(r["forward_ms"]), int(r["repeats"])]
        for _, r in rows.iterrows()
    ]  # fmt: skip
    return _pipe(body, ["task", "batch", "estimator", "pass / fwd", "noise share",
                        "pass less noise / fwd", "estimate / fwd", "FLOPs / fwd",
                        "subspace share", "fwd (ms)", "rounds"])  # fmt: skip


def cost_findings(rows: pd.DataFrame) -> list[str]:
    out = []
    for task, group in rows.groupby("task", sort=False):
        fg = group[group["pass_ratio"].notna() & (group["estimator"] != JVP)]
        parts = []
        if len(fg):
            best = fg.loc[fg["pass_ratio"].idxmin()]
            parts.append(f"the cheapest tangent pass is {best['estimator']}'s at "
                         f"{fmt(best['pass_ratio'])}× a forward")  # fmt: skip
        est = group[group["estimate_ratio"].notna()]
        if len(est):
            best = est.loc[est["estimate_ratio"].idxmin()]
            ratio, flops = fmt(best["estimate_ratio"]), fmt(best["flop_ratio"])
            parts.append(f"the cheapest whole estimate {best['estimator']}'s at {ratio}× "
                         f"(FLOPs {flops}×)")  # fmt: skip
        for name, goal in GOALS.items():
            hit = group[group["estimator"] == name]
            if len(hit):
                ratio = hit["pass_ratio"].iloc[0]
                verdict = "meets" if ratio <= goal else "misses"
                parts.append(f"{name}'s pass {fmt(ratio)}× {verdict} its goal of {goal:g}×")
        jvp = group[group["estimator"] == JVP]
        if len(jvp):
            parts.append(f"torch.func.jvp along all weight directions (fg-weight's reference) "
                         f"takes {fmt(jvp['pass_ratio'].iloc[0])}× a forward")  # fmt: skip
        out.append(f"On {task} (batch {int(group['batch'].iloc[0])}): {'; '.join(parts)}.")
    out.append(f"Measured on {devices(rows)}, medians of {span(rows['repeats'])} interleaved "
               "rounds.")  # fmt: skip
    return out


# ---- memory


def memory_table(rows: pd.DataFrame) -> str:
    body = [
        [r["task"], int(r["batch"]), r["estimator"], fmt(r["params_grads_mb"]), fmt(r["peak_mb"]),
         fmt(r["peak_ratio"]), fmt(r["created_mb"]), fmt(r["created_ratio"])]
        for _, r in rows.iterrows()
    ]  # fmt: skip
    return _pipe(body, ["task", "batch", "estimator", "params+grads MB", "peak MB", "/ backprop",
                        "created MB", "created / backprop"])  # fmt: skip


def memory_findings(rows: pd.DataFrame) -> list[str]:
    out = []
    for (task, batch), group in rows.groupby(["task", "batch"], sort=False):
        fg = group[group["estimator"] != "backprop"]
        if not len(fg):
            continue
        low, high = fg.loc[fg["peak_ratio"].idxmin()], fg.loc[fg["peak_ratio"].idxmax()]
        out.append(f"On {task} (batch {int(batch)}) the lowest peak is {low['estimator']}'s at "
                   f"{fmt(low['peak_ratio'])}× backprop's, the highest {high['estimator']}'s at "
                   f"{fmt(high['peak_ratio'])}× (created storages only: "
                   f"{fmt(low['created_ratio'])}× and {fmt(high['created_ratio'])}×).")  # fmt: skip
    return out


# ---- quality and overlap


def quality_table(rows: pd.DataFrame) -> str:
    body = [
        [r["estimator"], str(r["layer"]), fmt(r["cosine"]), fmt(r["cosine_lo"]),
         fmt(r["cosine_hi"]), fmt(r["rel_bias"]), fmt(r["rel_variance"]), fmt(r["rel_mse"])]
        for _, r in rows.iterrows()
    ]  # fmt: skip
    return _pipe(body, ["estimator", "layer", "cosine", "lo", "hi", "rel bias", "rel var",
                        "rel MSE"])  # fmt: skip


def quality_findings(rows: pd.DataFrame) -> list[str]:
    total = rows[rows["layer"].astype(str) == "total"]
    if not len(total):
        return []
    first = total.iloc[0]
    best = total.loc[total["cosine"].idxmax()]
    low = total.loc[total["rel_mse"].idxmin()]
    cosines = "; ".join(f"{r['estimator']} {fmt(r['cosine'])} ({fmt(r['cosine_lo'])}–"
                        f"{fmt(r['cosine_hi'])})" for _, r in total.iterrows())  # fmt: skip
    return [
        f"On {first['task']} after {int(first['steps'])} backprop steps, R = "
        f"{int(first['draws'])} draws on a batch of {int(first['batch'])}, the whole "
        f"gradient's cosine with the exact one: {cosines}.",
        f"The highest cosine is {best['estimator']}'s ({fmt(best['cosine'])}); the lowest "
        f"relative MSE {low['estimator']}'s ({fmt(low['rel_mse'])}).",
    ]


def overlap_table(rows: pd.DataFrame) -> str:
    body = [
        [str(r["layer"]), f"{int(r['factor_rows'])} × {int(r['factor_cols'])}",
         fmt(r["mean_overlap"]), fmt(r["min_overlap"])]
        for _, r in rows.iterrows()
    ]  # fmt: skip
    return _pipe(body, ["layer", "C (r × in)", "mean overlap", "min overlap"])


def overlap_findings(rows: pd.DataFrame) -> list[str]:
    low = rows.loc[rows["mean_overlap"].idxmin()]
    layers = f"{len(rows)} guided layer{'s' if len(rows) != 1 else ''}"
    return [
        f"fg-wperp-ns's subspace overlaps fg-wperp's SVD by {span(rows['mean_overlap'])} on "
        f"average over sites across {layers} of {rows['task'].iloc[0]} (lowest: {low['layer']}; "
        f"the worst single site {fmt(rows['min_overlap'].min())})."
    ]


# ---- Newton-Schulz against SVD


def ns_table(rows: pd.DataFrame) -> str:
    body = [
        [f"{r['layer']} ({int(r['factor_rows'])} × {int(r['factor_cols'])})", int(r["sites"]),
         int(r["k"]), fmt(r["svd_s"]), fmt(r["gram_s"]), fmt(r["ns_s"]), fmt(r["svd_over_ns"]),
         fmt(r["gram_over_ns"]), fmt(r["ns_mean_overlap"]), fmt(r["ns_min_overlap"]),
         fmt(r["gram_min_overlap"]), int(r["repeats"])]
        for _, r in rows.iterrows()
    ]  # fmt: skip
    return _pipe(body, ["layer", "sites", "k", "batched SVD (s)", "fg-wperp Gram eigh (s)",
                        "NS (s)", "SVD / NS", "eigh / NS", "NS mean overlap", "NS min overlap",
                        "eigh min overlap", "rounds"])  # fmt: skip


def ns_findings(rows: pd.DataFrame) -> list[str]:
    return [
        f"On {r['task']} after {int(r['steps'])} steps, {r['layer']} with {int(r['sites'])} "
        f"sites: Newton-Schulz takes {fmt(r['ns_s'])} s against {fmt(r['svd_s'])} s for the "
        f"batched SVD ({fmt(r['svd_over_ns'])}×) and {fmt(r['gram_s'])} s for fg-wperp's Gram "
        f"eigendecomposition ({fmt(r['gram_over_ns'])}×), with mean overlap "
        f"{fmt(r['ns_mean_overlap'])} (worst site {fmt(r['ns_min_overlap'])}) against the "
        f"SVD's subspace; on {r['device']} ({int(r['threads'])} threads)."
        for _, r in rows.iterrows()
    ]


# ---- the sections

Draw = Callable[[pd.DataFrame], str]
Find = Callable[[pd.DataFrame], list[str]]
# (file, table name, title, question, source detail, table, findings)
TABLES: tuple[tuple[str, str, str, str, str, Draw, Find], ...] = (
    (
        "fg_cost.csv",
        "fg-cost",
        "Table: forward-gradient pass and estimate cost against a forward",
        "How much does each forward-gradient estimator's tangent pass, and its whole estimate, "
        "cost against a plain forward, in time and FLOPs (goals: fg-activity pass ≤ 2.3×, "
        "fg-weight pass ≤ 3.5×)?",
        "every row: per task and estimator, median time of `tangent_pass` (pass) and `estimate` "
        "over a plain no-grad forward with the loss, over `repeats` interleaved rounds; FLOPs of "
        "the estimate over the forward's; noise / subspace share: CPU-time share of the "
        "`fg-noise` / `fg-subspace` profiler ranges (CPU only).",
        cost_table,
        cost_findings,
    ),
    (
        "fg_memory.csv",
        "fg-memory",
        "Table: forward-gradient peak memory against backprop",
        "How much memory does one forward-gradient estimate hold at its peak against backprop's?",
        "every row: peak bytes of one estimate on the CPU (`StoragePeak`) over backprop's on the "
        "same model and batch; created: storages the step creates only (views of inputs skipped).",
        memory_table,
        memory_findings,
    ),
    (
        "fg_quality.csv",
        "fg-quality",
        "Table: forward-gradient quality after backprop training",
        "How close are R forward-gradient draws to the exact gradient of a trained model, per "
        "layer?",
        "every row: per estimator and layer (`total`: the whole gradient), cosine with its "
        "interval, relative bias, variance and MSE of R draws on a fixed batch against "
        "backprop's gradient.",
        quality_table,
        quality_findings,
    ),
    (
        "fg_overlap.csv",
        "fg-overlap",
        "Table: fg-wperp-ns subspace overlap with fg-wperp's SVD",
        "Does Newton-Schulz subspace iteration find the top-k subspace the SVD finds?",
        "every row: per guided layer of the trained model, ||V_k^T Q||_F^2 / k between "
        "fg-wperp-ns's basis Q (defaults) and fg-wperp's SVD basis V_k, mean and minimum over "
        "sites.",
        overlap_table,
        overlap_findings,
    ),
    (
        "fg_ns.csv",
        "fg-ns",
        "Table: Newton-Schulz against batched SVD for the W-perp bases",
        "How much faster is fg-wperp-ns's Newton-Schulz basis than a batched SVD, and how close?",
        "every row: median seconds over `repeats` interleaved rounds (CPU) of the top-k bases of "
        "every site's M = W diag(phi'(s)): batched SVD, fg-wperp's Gram eigendecomposition and "
        "fg-wperp-ns, with their overlaps with the SVD's subspace.",
        ns_table,
        ns_findings,
    ),
    (
        "fg_draws.csv",
        "fg-draws",
        "Table: forward-gradient R draws in one call against R single",
        f"Are R forward-gradient draws in one call at least {GOAL:g}× faster than R single "
        "estimates?",
        "every row: per task and estimator, median seconds of R single `estimate` calls and of "
        "one `estimate_draws(batch, R)` over `repeats` interleaved rounds; speed-up = single / "
        "batched.",
        draws_table,
        draws_findings,
    ),
)


def build(res: Results, style: Style, out: Path) -> list[Section]:
    files = [t[0] for t in TABLES]
    if all(res.frame(f) is None for f in files):
        return [skip("Tables: forward-gradient estimators", "What do the forward-gradient "
                     "estimators cost, in time, FLOPs and memory, and how good are they?",
                     ", ".join(files), f"the results hold none of these files (write them "
                     f"with `{HOW}`)")]  # fmt: skip
    sections = []
    for file, name, title, question, detail, draw, find in TABLES:
        source = f"{file} (written by `{HOW}`), {detail}"
        rows = res.frame(file)
        if rows is None:
            sections.append(skip(title, question, source, f"the results hold no {file} (run "
                                 f"the study with its table in `tables`)"))  # fmt: skip
            continue
        text = draw(rows)
        written = [write_table(out, name, title, source, text)]
        sections.append(Section(title, question, source, written, find(rows), body=text))
    return sections
