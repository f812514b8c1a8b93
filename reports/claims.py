"""Section: the four source claims of issue 16, each re-measured on the sweep's tables and given a
verdict (`reports.verdict`) with its numbers and 95% intervals.

1. cv-predicted (Ciosek, Felicioni and Elenter Litwin, arXiv 2511.05187): at fraction 3/4 on a ViT,
   validation accuracy at equal wall-clock beats backprop's (train.csv); and below the break-even
   alignment there is no gain (diagnostics.csv `alignment`, `break_even`).
2. W-perp (Wang, Markou and Campbell): its guess is closer to the true gradient than the W^T and
   isotropic activity guesses (quality.csv cosine), and the gap grows with width.
3. Sparse VJPs (Bakong et al.): the estimates are unbiased (quality.csv bias test), and the
   minimal-variance sketch has lower relative MSE than uniform sampling at the same keep.
4. SVD subspace (the blog post): accuracy within 0.03 of backprop on its four data sets
   (train.csv) with at least 30% less step time (cost.csv).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from reports.load import KEYS, Results, number
from reports.quality import ALPHA, at_end, over_seeds
from reports.reach import runs_to_target
from reports.section import Section, skip
from reports.style import BACKPROP, Style, fmt
from reports.sweeps import split_task
from reports.tables import cost_by_setting, flag
from reports.verdict import (
    Check,
    Claim,
    Estimate,
    Verdict,
    beats,
    below,
    exceeds,
    mean_interval,
    seeds,
    verdict,
)
from tasks.spec import parse_options

TITLE = "Claims"
QUESTION = "Do the source papers' claims hold on these results?"
SOURCE = (
    'train.csv, quality.csv (last checkpoint, `layer == "total"`), cost.csv, diagnostics.csv; '
    "intervals: 95% Student-t over seeds for means over seeds, the envelope of the seeds' 95% "
    "draw intervals for quality.csv statistics, the cost cell's interval for time ratios. A task "
    'counts for a claim only when the interval decides it (docs/protocol.md, "Claims").'
)
BLOG_TASKS = ("mlp-breast-cancer", "mlp-diabetes", "mlp-synthetic20", "mlp-digits-1vr")
ACC_TOLERANCE = 0.03  # the blog's largest accuracy loss
TIME_BOUND = 0.7  # the blog's smallest time saving, 30%
PRESET = "python -m runners.sweep --preset claims"  # every claim but 1a (no ViT in the preset)
# The ViT runs of claim 1a under the preset's settings, read together with the preset's folder.
VIT = (
    f"{PRESET} --tasks vit-digits --estimators backprop cv-predicted --measure train --out "
    "results/claims-vit && python -m reports --results results/claims results/claims-vit"
)

CV_GAIN = Claim(
    "Claim 1a",
    "Ciosek, Felicioni and Elenter Litwin, arXiv 2511.05187",
    "With 3/4 of each batch predicted, a ViT's validation accuracy at equal wall-clock beats "
    "full backprop's",
    "per seed, cv-predicted (fraction 0.75) minus backprop validation accuracy at the last eval "
    "within the shorter run's wall-clock, on the ViT tasks (train.csv)",
    VIT,
)
CV_BREAK_EVEN = Claim(
    "Claim 1b",
    CV_GAIN.source,
    "Below the break-even alignment, predicting gives no gain",
    "on each task where cv-predicted's mean alignment (per seed, over its logged steps; "
    "diagnostics.csv) is below its break-even alignment, the accuracy difference of claim 1a",
    PRESET,
)
WPERP = Claim(
    "Claim 2a",
    "Wang, Markou and Campbell",
    "The W-perp guess is closer to the true gradient than the W^T and isotropic guesses",
    "cosine with the exact gradient at the last checkpoint (quality.csv), fg-wperp against "
    "fg-wt and fg-activity",
    PRESET,
)
WPERP_WIDTH = Claim(
    "Claim 2b",
    WPERP.source,
    "W-perp's advantage over the best other guess grows with width",
    "fg-wperp's cosine minus the better of fg-wt and fg-activity (interval: the ends of the two "
    "intervals), widest against narrowest width",
    PRESET,
)
SPARSE_BIAS = Claim(
    "Claim 3a",
    "Bakong, Massoulie, Oyallon and Scaman",
    "Randomized sparse VJPs give unbiased gradient estimates",
    f"the bias test of every sparse-vjp setting (Hotelling T², seeds combined by Fisher's method, "
    f"alpha {ALPHA}; quality.csv)",
    PRESET,
)
SPARSE_MINVAR = Claim(
    "Claim 3b",
    SPARSE_BIAS.source,
    "The minimal-variance sketch beats uniform sampling",
    "relative MSE at the last checkpoint (quality.csv), sketch=minvar against sketch=uniform at "
    "the same keep",
    PRESET,
)
SVD_ACC = Claim(
    "Claim 4a",
    "the SVD-subspace blog post",
    f"Subspace projection's accuracy is within {ACC_TOLERANCE} of backprop's on the blog's four "
    "data sets",
    "per seed, svd-subspace minus backprop final validation accuracy (train.csv)",
    PRESET,
)
SVD_TIME = Claim(
    "Claim 4b",
    SVD_ACC.source,
    f"Subspace projection takes at least {fmt(100 * (1 - TIME_BOUND))}% less time per step "
    "than backprop",
    "svd-subspace's step time over backprop's, interleaved (cost.csv); the whole step's FLOP "
    "ratio beside it (the first layer's weight-gradient FLOPs alone are in blog.csv, `python "
    "-m runners.study blog-table --out DIR`)",
    PRESET,
)


def matches(params: str, estimator: str, want: str, **options: str) -> bool:
    """Whether a row of `want` (an estimator name) has every option of `options` (numbers
    compared as numbers)."""
    if estimator != want:
        return False
    have = parse_options(params) if params != "-" else {}
    return all(
        k in have and (have[k] == v or number(have[k]) == number(v)) for k, v in options.items()
    )


def _rows(df: pd.DataFrame, want: str, **options: str) -> pd.DataFrame:
    """The rows of `df` that `matches` selects."""
    keep = [
        matches(p, e, want, **options) for p, e in zip(df["params"], df["estimator"], strict=True)
    ]
    return df[pd.Series(keep, index=df.index, dtype=bool)]


def accuracy_at(run: pd.DataFrame, seconds: float) -> float:
    """Validation accuracy of the last eval at or before `seconds` of training (NaN when none;
    0 for a run that had diverged by then, as the accuracy of no model)."""
    evals = run[run["seconds"] <= seconds].sort_values("step")
    if evals.empty:
        return math.nan
    last = evals.iloc[-1]
    return 0.0 if last["status"] == "diverged" else float(last["val_acc"])


def budget_gains(train: pd.DataFrame, task: str) -> Estimate | None:
    """Claim 1a's numbers on `task`: cv-predicted (fraction 0.75) minus backprop accuracy at the
    shorter run's wall-clock, per seed both ran; None without such a seed."""
    t = train[train["task"] == task]
    mine = _rows(t, "cv-predicted", fraction="0.75")
    base = t[t["estimator"] == BACKPROP]
    gains = []
    for seed in sorted(set(mine["seed"]) & set(base["seed"])):
        a, b = mine[mine["seed"] == seed], base[base["seed"] == seed]
        budget = min(float(a["seconds"].max()), float(b["seconds"].max()))
        gains.append(accuracy_at(a, budget) - accuracy_at(b, budget))
    return mean_interval(gains) if gains else None


def _per_seed_mean(diag: pd.DataFrame, name: str) -> Estimate:
    return mean_interval(diag[diag["name"] == name].groupby("seed")["value"].mean().tolist())


def cv_checks(res: Results) -> tuple[list[Check], list[Check], str]:
    """Checks of claims 1a (ViT tasks) and 1b (tasks below break-even), and why 1b has none."""
    train, diag = res.frame("train.csv"), res.frame("diagnostics.csv")
    gain_checks: list[Check] = []
    even_checks: list[Check] = []
    why = "the results hold no cv-predicted diagnostics"
    if train is None:
        return gain_checks, even_checks, why
    for task in res.tasks():
        gain = budget_gains(train, task)
        if gain is None:
            continue
        text = f"accuracy difference {gain.text()}"
        if split_task(task)[0].startswith("vit-"):
            gain_checks.append(Check(task, exceeds(gain, 0.0), text))
        cv = None if diag is None else _rows(diag[diag["task"] == task], "cv-predicted",
                                             fraction="0.75")  # fmt: skip
        if cv is None or not (cv["name"] == "alignment").any():
            continue
        align, even = _per_seed_mean(cv, "alignment"), _per_seed_mean(cv, "break_even")
        why = "on no task is cv-predicted's alignment interval wholly below its break-even"
        if align.hi < even.value:
            no_gain = {True: False, False: True, None: None}[exceeds(gain, 0.0)]
            even_checks.append(Check(
                task, no_gain,
                f"alignment {align.text()} below break-even {fmt(even.value)}, {text}",
            ))  # fmt: skip
    return gain_checks, even_checks, why


def _quality(res: Results) -> pd.DataFrame | None:
    quality = res.frame("quality.csv")
    if quality is None:
        return None
    return over_seeds(at_end(quality[quality["layer"] == "total"]), [*KEYS, "checkpoint"])


def _cosine(q: pd.DataFrame, task: str, estimator: str) -> Estimate | None:
    rows = q[(q["task"] == task) & (q["estimator"] == estimator)]
    if rows.empty:
        return None
    r = rows.iloc[0]
    return Estimate(r["cosine"], r["cosine_lo"], r["cosine_hi"], seeds(int(r["seeds"])))


def wperp_gap(wperp: Estimate, other: Estimate) -> Estimate:
    """wperp minus other, its interval from the two intervals' ends (conservative)."""
    return Estimate(wperp.value - other.value, wperp.lo - other.hi, wperp.hi - other.lo,
                    wperp.basis)  # fmt: skip


def wperp_checks(res: Results) -> tuple[list[Check], list[Check]]:
    """Checks of claims 2a (each task) and 2b (each task base run at two or more widths)."""
    q = _quality(res)
    if q is None:
        return [], []
    checks: list[Check] = []
    gaps: dict[str, list[tuple[float, Estimate]]] = {}
    for task in res.tasks():
        wperp, wt, iso = (_cosine(q, task, e) for e in ("fg-wperp", "fg-wt", "fg-activity"))
        if wperp is None or wt is None or iso is None:
            continue
        outcomes = [beats(wperp, wt), beats(wperp, iso)]
        passed = False if False in outcomes else (None if None in outcomes else True)
        checks.append(Check(task, passed, f"cosine fg-wperp {wperp.text()}, fg-wt {wt.text()}, "
                                          f"fg-activity {iso.text()}"))  # fmt: skip
        base, options = split_task(task)
        if "width" in options:
            best = wt if wt.value >= iso.value else iso
            gaps.setdefault(base, []).append((number(options["width"]), wperp_gap(wperp, best)))
    width_checks = []
    for base, points in gaps.items():
        if len({w for w, _ in points}) < 2:
            continue
        (narrow, small), (wide, large) = min(points), max(points)
        width_checks.append(Check(base, beats(large, small),
                                  f"gap {small.text()} at width {fmt(narrow)}, {large.text()} "
                                  f"at width {fmt(wide)}"))  # fmt: skip
    return checks, width_checks


def _sketch(params: str) -> str:
    """ "sketch=uniform, keep=0.25" of a sparse-vjp setting."""
    options = parse_options(params)
    return ", ".join(f"{k}={options[k]}" for k in ("sketch", "keep") if k in options)


def sparse_checks(res: Results) -> tuple[list[Check], list[Check]]:
    """Checks of claims 3a (bias test, each task) and 3b (minvar against uniform, each task)."""
    q = _quality(res)
    if q is None:
        return [], []
    bias, minvar = [], []
    for task in res.tasks():
        rows = q[(q["task"] == task) & (q["estimator"] == "sparse-vjp")]
        if rows.empty:
            continue
        parts = [f"{_sketch(r['params'])}: rel. bias {fmt(r['rel_bias'])} ± "
                 f"{fmt(r['rel_bias_se'])}, p {fmt(r['bias_p'])}"
                 for r in rows.to_dict("records")]  # fmt: skip
        rejected = bool((rows["bias_p"] < ALPHA).any())
        tested = bool(rows["bias_p"].notna().any())
        bias.append(Check(task, (not rejected) if tested else None, "; ".join(parts)))
        for keep in sorted({parse_options(p).get("keep", "") for p in rows["params"]}):
            by = {s: _rows(rows, "sparse-vjp", sketch=s, keep=keep) for s in ("minvar", "uniform")}
            if by["minvar"].empty or by["uniform"].empty:
                continue
            m, u = (by[s].iloc[0] for s in ("minvar", "uniform"))
            mse = {s: Estimate(r["rel_mse"], r["rel_mse_lo"], r["rel_mse_hi"],
                               seeds(int(r["seeds"])))
                   for s, r in (("minvar", m), ("uniform", u))}  # fmt: skip
            minvar.append(Check(f"{task} (keep {keep})", beats(mse["uniform"], mse["minvar"]),
                                f"relative MSE minvar {mse['minvar'].text()}, uniform "
                                f"{mse['uniform'].text()}"))  # fmt: skip
    return bias, minvar


def svd_checks(res: Results) -> tuple[list[Check], list[Check]]:
    """Checks of claims 4a (accuracy, each blog task) and 4b (step time, each blog task)."""
    runs = runs_to_target(res)
    acc = []
    for task in [t for t in res.tasks() if split_task(t)[0] in BLOG_TASKS]:
        t = runs[runs["task"] == task]
        mine, base = t[t["estimator"] == "svd-subspace"], t[t["estimator"] == BACKPROP]
        common = sorted(set(mine["seed"]) & set(base["seed"]))
        if not common:
            continue
        final = {s: dict(zip(g["seed"], g["final_acc"].clip(lower=0.0), strict=True))
                 for s, g in (("svd", mine), ("bp", base))}  # fmt: skip
        diff = mean_interval([final["svd"][s] - final["bp"][s] for s in common])
        acc.append(Check(task, exceeds(diff, -ACC_TOLERANCE),
                         f"accuracy difference {diff.text()}"))  # fmt: skip
    cost = res.frame("cost.csv")
    time = []
    if cost is not None:
        for r in cost_by_setting(cost).to_dict("records"):
            if r["estimator"] != "svd-subspace" or split_task(r["task"])[0] not in BLOG_TASKS:
                continue
            ratio = Estimate(r["time_ratio"], r["time_ratio_lo"], r["time_ratio_hi"],
                             "cost cell")  # fmt: skip
            noisy = flag(r["noisy"])
            time.append(Check(r["task"], None if noisy else below(ratio, TIME_BOUND),
                              f"time ratio {ratio.text()}{' (noisy)' if noisy else ''}, whole-"
                              f"step FLOP ratio {fmt(r['flop_ratio'])}"))  # fmt: skip
    return acc, time


def verdicts(res: Results) -> list[Verdict]:
    """Every claim's verdict on `res`, in the order of issue 16."""
    gain, even, why = cv_checks(res)
    wperp, width = wperp_checks(res)
    bias, minvar = sparse_checks(res)
    acc, time = svd_checks(res)
    return [
        verdict(CV_GAIN, gain),
        verdict(CV_BREAK_EVEN, even, why),
        verdict(WPERP, wperp),
        verdict(WPERP_WIDTH, width, "no task was run at two or more widths with the guesses"),
        verdict(SPARSE_BIAS, bias),
        verdict(SPARSE_MINVAR, minvar),
        verdict(SVD_ACC, acc),
        verdict(SVD_TIME, time),
    ]


CLAIMS: tuple[Claim, ...] = (CV_GAIN, CV_BREAK_EVEN, WPERP, WPERP_WIDTH, SPARSE_BIAS,
                             SPARSE_MINVAR, SVD_ACC, SVD_TIME)  # fmt: skip


def build(res: Results, style: Style, out: Path) -> list[Section]:
    if not any(f in res.frames for f in ("train.csv", "quality.csv", "cost.csv")):
        return [skip(TITLE, QUESTION, SOURCE, "the results hold no train.csv, quality.csv or "
                     f"cost.csv rows (run `{PRESET}`)")]  # fmt: skip
    found = verdicts(res)
    body = tabulate([[c.name, c.statement, v.word] for c, v in zip(CLAIMS, found, strict=True)],
                    headers=["claim", "statement", "verdict"], tablefmt="pipe")  # fmt: skip
    return [Section(TITLE, QUESTION, SOURCE, findings=[v.sentence for v in found], body=body)]
