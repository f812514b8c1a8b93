"""Claims 3a-3c: randomized sparse VJPs (Bakong, Massoulie, Oyallon and Scaman).

3a. The estimates are unbiased (quality.csv bias test).
3b. The minimal-variance sketch has lower relative MSE than uniform sampling at the same keep.
3c. Some keep fraction saves more time per step than its extra steps cost: it reaches the task's
    target in less wall-clock than backprop (train.csv), on MLP, BagNet and ViT.

Claim 3c's censoring: a run that never reaches the target counts at its last eval's seconds, a
lower bound on its time to target. A setting's per-seed ratio to backprop is then a lower bound
where its own run is censored and an upper bound where backprop's is, so a check decides for the
claim only when none of the setting's runs is censored, against it only when none of
backprop's is; a setting that reaches the target on no seed while backprop reaches it is
against.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reports.claim_rows import PRESET, quality_at_end, rows
from reports.load import Results
from reports.quality import ALPHA
from reports.reach import RUN, runs_to_target
from reports.style import BACKPROP, fmt
from reports.verdict import (
    Check,
    Claim,
    Estimate,
    Verdict,
    any_of,
    beats,
    below,
    mean_interval,
    outcome,
    seeds,
    verdict,
)
from tasks.spec import parse_options

SOURCE = "Bakong, Massoulie, Oyallon and Scaman"

BIAS = Claim(
    "Claim 3a",
    SOURCE,
    "Randomized sparse VJPs give unbiased gradient estimates",
    "the bias test of every sparse-vjp setting on every task (its p: the seeds' bias tests "
    "combined by Fisher's method; quality.csv, last checkpoint), Holm-Bonferroni over all of "
    f"them at family-wise alpha {ALPHA}: a setting is against the claim when Holm rejects its "
    "p, so that testing many settings does not by itself find a bias",
    PRESET,
)
MINVAR = Claim(
    "Claim 3b",
    SOURCE,
    "The minimal-variance sketch beats uniform sampling",
    "relative MSE at the last checkpoint (quality.csv), sketch=minvar against sketch=uniform at "
    "the same keep",
    PRESET,
)
TO_TARGET = Claim(
    "Claim 3c",
    SOURCE,
    "A keep fraction exists where the cost saving outweighs the extra steps to reach a target, "
    "on MLP, BagNet and ViT",
    "per seed, sparse-vjp's seconds to the task's target over backprop's (train.csv; a run that "
    "never reaches it counted at its last eval's seconds, a bound: such a setting cannot count "
    "for the claim, nor against it where backprop's run is the one cut short); geometric mean "
    "over seeds, exp of the log-ratios' t-interval; for on a task when some setting's interval "
    "is wholly below 1, against when every setting's is at or above 1 or never reaches the "
    "target",
    PRESET,
)
CLAIMS = (BIAS, MINVAR, TO_TARGET)
TARGET_WHY = (
    "no task with a target in the manifest has backprop and sparse-vjp runs on common seeds "
    "(train.csv)"
)


def _sketch(params: str) -> str:
    """ "sketch=uniform, keep=0.25" of a sparse-vjp setting."""
    options = parse_options(params)
    return ", ".join(f"{k}={options[k]}" for k in ("sketch", "keep") if k in options)


def quality_checks(res: Results) -> tuple[list[Check], list[Check]]:
    """Checks of claims 3a (bias test, each task) and 3b (minvar against uniform, each task)."""
    q = quality_at_end(res)
    if q is None:
        return [], []
    bias, minvar = [], []
    sparse = q[q["estimator"] == "sparse-vjp"]
    holm_rejected = holm(sparse["bias_p"].dropna().tolist(), ALPHA)
    for task in res.tasks():
        found = sparse[sparse["task"] == task]
        if found.empty:
            continue
        parts = [f"{_sketch(r['params'])}: rel. bias {fmt(r['rel_bias'])} ± "
                 f"{fmt(r['rel_bias_se'])}, p {fmt(r['bias_p'])}"
                 for r in found.to_dict("records")]  # fmt: skip
        rejected = any(p in holm_rejected for p in found["bias_p"])
        tested = bool(found["bias_p"].notna().any())
        bias.append(Check(task, (not rejected) if tested else None, "; ".join(parts)))
        for keep in sorted({parse_options(p).get("keep", "") for p in found["params"]}):
            by = {s: rows(found, "sparse-vjp", {"sketch": s, "keep": keep})
                  for s in ("minvar", "uniform")}  # fmt: skip
            if by["minvar"].empty or by["uniform"].empty:
                continue
            mse = {s: Estimate(r["rel_mse"], r["rel_mse_lo"], r["rel_mse_hi"],
                               seeds(int(r["seeds"])))
                   for s, r in ((s, by[s].iloc[0]) for s in ("minvar", "uniform"))}  # fmt: skip
            minvar.append(Check(f"{task} (keep {keep})", beats(mse["uniform"], mse["minvar"]),
                                f"relative MSE minvar {mse['minvar'].text()}, uniform "
                                f"{mse['uniform'].text()}"))  # fmt: skip
    return bias, minvar


def holm(pvalues: list[float], alpha: float) -> set[float]:
    """The p-values Holm's step-down procedure rejects at family-wise level `alpha`: sorted
    ascending, the i-th (from 0) is rejected while p <= alpha / (m - i)."""
    rejected: set[float] = set()
    for i, p in enumerate(sorted(pvalues)):
        if p > alpha / (len(pvalues) - i):
            break
        rejected.add(p)
    return rejected


def labels(params: list[str]) -> dict[str, str]:
    """Each sparse-vjp setting named by the options on which the settings differ (keep when
    they do not), "keep=0.25, sketch=uniform"."""
    parsed = {p: parse_options(p) for p in params}
    keys = sorted({k for o in parsed.values() for k in o})
    differ = [k for k in keys if len({o.get(k) for o in parsed.values()}) > 1] or ["keep"]
    return {p: ", ".join(f"{k}={o[k]}" for k in differ if k in o) for p, o in parsed.items()}


def times(res: Results) -> pd.DataFrame:
    """`runs_to_target` with `reached` (bool) and `bound`: the seconds to the target, or for a
    run that never reaches it its last eval's seconds (a lower bound)."""
    runs = runs_to_target(res)
    train = res.frame("train.csv")
    if train is None or runs.empty:
        return runs.assign(reached=pd.Series(dtype=bool), bound=pd.Series(dtype=float))
    last = train.groupby(RUN)["seconds"].max().rename("last").reset_index()
    runs = runs.merge(last, on=RUN, how="left")
    reached = np.isfinite(runs["seconds"].astype(float))
    return runs.assign(reached=reached, bound=runs["seconds"].where(reached, runs["last"]))


def ratio_to_backprop(mine: pd.DataFrame, base: pd.DataFrame) -> tuple[Estimate, bool | None, str]:
    """One setting's claim 3c numbers over the seeds both ran (`times` rows of the setting and
    of backprop, one per seed): the geometric-mean ratio of seconds to target with its interval,
    the outcome under the censoring rule (module docstring), and how many runs reached it."""
    pair = mine.merge(base, on="seed", suffixes=("", "_bp"))
    pair = pair[(pair["bound"] > 0) & (pair["bound_bp"] > 0)]  # 0 s: met at the first eval
    count = f"reached {int(pair['reached'].sum())}/{len(pair)}, backprop "
    count += f"{int(pair['reached_bp'].sum())}/{len(pair)}"
    logs = mean_interval(np.log(pair["bound"] / pair["bound_bp"]).tolist())
    ratio = Estimate(math.exp(logs.value), math.exp(logs.lo), math.exp(logs.hi), logs.basis)
    if not pair["reached"].any():
        return ratio, False if pair["reached_bp"].any() else None, count
    passed = below(ratio, 1.0)
    if passed is True and not pair["reached"].all():
        passed = None  # a censored run's ratio is a lower bound
    if passed is False and not pair["reached_bp"].all():
        passed = None  # a censored backprop run makes the ratio an upper bound
    return ratio, passed, count


def target_checks(res: Results) -> list[Check]:
    """Checks of claim 3c: each task with backprop and sparse-vjp runs on common seeds."""
    runs = times(res)
    checks = []
    for task in res.tasks():
        here = runs[runs["task"] == task]
        base = here[here["estimator"] == BACKPROP]
        sparse = here[(here["estimator"] == "sparse-vjp") & here["seed"].isin(base["seed"])]
        if base.empty or sparse.empty:
            continue
        names = labels(list(dict.fromkeys(sparse["params"])))
        found = [(names[str(params)], *ratio_to_backprop(mine, base))
                 for params, mine in sparse.groupby("params", sort=False)]  # fmt: skip
        found.sort(key=lambda f: (f[2] is not True, f[1].value))  # the best first: for, lowest
        parts = [f"{name}: seconds-to-target ratio {ratio.text()} ({count}; {outcome(p)})"
                 for name, ratio, p, count in found]  # fmt: skip
        checks.append(Check(task, any_of([f[2] for f in found]), "best " + "; ".join(parts)))
    return checks


def verdicts(res: Results) -> list[Verdict]:
    """Verdicts of claims 3a-3c on `res`."""
    bias, minvar = quality_checks(res)
    return [
        verdict(BIAS, bias),
        verdict(MINVAR, minvar),
        verdict(TO_TARGET, target_checks(res), TARGET_WHY),
    ]
