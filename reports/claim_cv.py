"""Claims 1a-1c: cv-predicted (Ciosek, Felicioni and Elenter Litwin, arXiv 2511.05187).

1a. At fraction 3/4 on a ViT, validation accuracy at equal wall-clock beats backprop's
    (train.csv).
1b. Below the break-even alignment there is no gain (diagnostics.csv `alignment`, `break_even`).
1c. The estimate's variance follows the closed form in the alignment: in the cv-predicted
    study's table (`cv_predicted_variance.csv`, `python -m runners.study cv-predicted`), the
    relative variance measured over many draws at one batch against the closed form
    (1/c - 1/n) S_r^2 / ||g||^2, for predictors that span alignments; and, where training runs
    logged it (`ratio_every` > 0), the variance ratio S_r^2 / S_t^2 against
    1 - beta (2 - beta) rho^2, the form the break-even alignment rests on (diagnostics.csv).

1a and 1b read only the setting fraction 0.75, ratio_every 0: a run logging `variance_ratio`
spends wall-clock on per-example gradients, which would tilt 1a's equal-time comparison.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reports.claim_rows import PRESET, place, rows, validation_size
from reports.load import Results
from reports.style import BACKPROP, fmt
from reports.sweeps import split_task
from reports.verdict import (
    Check,
    Claim,
    Estimate,
    Verdict,
    accuracy_difference,
    exceeds,
    mean_interval,
    verdict,
    within,
)

# The setting of claims 1a and 1b; ratio_every reads as its default 0 when params lack it.
STEADY = {"fraction": "0.75", "ratio_every": "0"}
DEFAULTS = {"ratio_every": "0"}
TOLERANCE = 0.1  # claim 1c (diagnostics): largest absolute gap, measured - closed-form ratio
# Claim 1c (study): the equivalence bounds of measured over closed-form variance, the usual
# 80-125% margin of a ratio.
RATIO_BOUNDS = (0.8, 1.25)
STUDY = "cv_predicted_variance.csv"
SOURCE = "Ciosek, Felicioni and Elenter Litwin, arXiv 2511.05187"

GAIN = Claim(
    "Claim 1a",
    SOURCE,
    "With 3/4 of each batch predicted, a ViT's validation accuracy at equal wall-clock beats "
    "full backprop's",
    "per seed, cv-predicted (fraction 0.75, ratio_every 0) minus backprop validation accuracy at "
    "the last eval within the shorter run's wall-clock, on the ViT tasks (train.csv); "
    "t-interval over seeds widened by the validation set's sampling error (at least "
    "sqrt((|d| - d²) / n) for a difference d on n examples: one set for every seed)",
    PRESET,
)
BREAK_EVEN = Claim(
    "Claim 1b",
    SOURCE,
    "Below the break-even alignment, predicting gives no gain",
    "on each task where cv-predicted's mean alignment (per seed, over its logged steps; "
    "diagnostics.csv) is below its break-even alignment, the accuracy difference of claim 1a",
    PRESET,
)
CLOSED_FORM = Claim(
    "Claim 1c",
    SOURCE,
    "The variance follows the closed form in the alignment",
    f"per task of the cv-predicted study ({STUDY}), the geometric mean over its predictors "
    "(buffers of 4 to 64 pairs, beta 0, 1 or fitted, an oracle: alignments from none to near "
    "1) of the relative variance measured over the study's draws at one batch over the closed "
    "form (1/c - 1/n) S_r² / ||g||², t-interval over the predictors, within "
    f"[{fmt(RATIO_BOUNDS[0])}, {fmt(RATIO_BOUNDS[1])}]; and where training runs logged "
    "`variance_ratio` (ratio_every > 0; diagnostics.csv), per seed the mean over those steps of "
    "measured S_r² / S_t² minus 1 - beta (2 - beta) rho² at that step's `beta` and "
    f"`alignment` rho, t-interval over seeds, within ±{fmt(TOLERANCE)} (rho as logged is the "
    "cosine of the control micro-batch's mean predicted and true gradients, not the "
    "per-example correlation the closed form assumes)",
    PRESET,
)
CLAIMS = (GAIN, BREAK_EVEN, CLOSED_FORM)
RATIO_WHY = (f"the results hold neither the cv-predicted study's {STUDY} nor `variance_ratio` "
             "diagnostics (ratio_every > 0)")  # fmt: skip


def accuracy_at(run: pd.DataFrame, seconds: float) -> float:
    """Validation accuracy of the last eval at or before `seconds` of training (NaN when none;
    0 for a run that had diverged by then, as the accuracy of no model)."""
    evals = run[run["seconds"] <= seconds].sort_values("step")
    if evals.empty:
        return math.nan
    last = evals.iloc[-1]
    return 0.0 if last["status"] == "diverged" else float(last["val_acc"])


def budget_gains(train: pd.DataFrame, task: str, n_val: int | None) -> Estimate | None:
    """Claim 1a's numbers on `task`: cv-predicted (`STEADY`) minus backprop accuracy at the
    shorter run's wall-clock, per seed both ran, its interval counting the validation set's
    `n_val` examples (`accuracy_difference`); None without such a seed."""
    t = train[train["task"] == task]
    mine = rows(t, "cv-predicted", STEADY, DEFAULTS)
    base = t[t["estimator"] == BACKPROP]
    gains = []
    for seed in sorted(set(mine["seed"]) & set(base["seed"])):
        a, b = mine[mine["seed"] == seed], base[base["seed"] == seed]
        budget = min(float(a["seconds"].max()), float(b["seconds"].max()))
        gains.append(accuracy_at(a, budget) - accuracy_at(b, budget))
    return accuracy_difference(gains, n_val) if gains else None


def _per_seed_mean(diag: pd.DataFrame, name: str) -> Estimate:
    return mean_interval(diag[diag["name"] == name].groupby("seed")["value"].mean().tolist())


def _break_even(value: float) -> str:
    """ "break-even 0.816", or what an infinite mean break-even means."""
    if math.isinf(value):
        return "break-even ∞ (at some steps' beta no cosine ≤ 1 breaks even)"
    return f"break-even {fmt(value)}"


def budget_checks(res: Results) -> tuple[list[Check], list[Check], str]:
    """Checks of claims 1a (ViT tasks) and 1b (tasks below break-even), and why 1b has none."""
    train, diag = res.frame("train.csv"), res.frame("diagnostics.csv")
    gain_checks: list[Check] = []
    even_checks: list[Check] = []
    why = "the results hold no cv-predicted diagnostics"
    if train is None:
        return gain_checks, even_checks, why
    for task in res.tasks():
        gain = budget_gains(train, task, validation_size(res, task))
        if gain is None:
            continue
        text = f"accuracy difference {gain.text()}"
        if split_task(task)[0].startswith("vit-"):
            gain_checks.append(Check(task, exceeds(gain, 0.0), text))
        cv = None if diag is None else rows(diag[diag["task"] == task], "cv-predicted", STEADY,
                                            DEFAULTS)  # fmt: skip
        if cv is None or not (cv["name"] == "alignment").any():
            continue
        align, even = _per_seed_mean(cv, "alignment"), _per_seed_mean(cv, "break_even")
        why = "on no task is cv-predicted's alignment interval wholly below its break-even"
        if align.hi < even.value:
            no_gain = {True: False, False: True, None: None}[exceeds(gain, 0.0)]
            even_checks.append(Check(
                task, no_gain,
                f"alignment {align.text()} below {_break_even(even.value)}, {text}",
            ))  # fmt: skip
    return gain_checks, even_checks, why


def closed_form_gap(diag: pd.DataFrame) -> tuple[Estimate, dict[str, float]]:
    """One setting's claim 1c numbers: per seed, the mean over its `variance_ratio` steps of
    measured minus 1 - beta (2 - beta) rho^2 (that step's beta and alignment), as a t-interval
    over seeds; and the means over seeds of the measured and closed-form ratios, rho, beta and
    the steps per seed."""
    wide = diag.pivot_table(index=["seed", "step"], columns="name", values="value")
    wide = wide.dropna(subset=["variance_ratio", "alignment", "beta"])
    beta, rho = wide["beta"], wide["alignment"]
    closed = 1 - beta * (2 - beta) * rho**2
    per_step = pd.DataFrame({"measured": wide["variance_ratio"], "closed": closed, "rho": rho,
                             "beta": beta})  # fmt: skip
    by_seed = per_step.groupby(level="seed")
    per_seed = by_seed.mean()
    gap = mean_interval((per_seed["measured"] - per_seed["closed"]).tolist())
    return gap, {**per_seed.mean().to_dict(), "steps": float(by_seed.size().mean())}


def closed_form_checks(res: Results) -> list[Check]:
    """Checks of claim 1c: each task and cv-predicted setting with `variance_ratio` rows."""
    diag = res.frame("diagnostics.csv")
    if diag is None:
        return []
    checks = []
    for task in res.tasks():
        cv = diag[(diag["task"] == task) & (diag["estimator"] == "cv-predicted")]
        logged = cv[cv["name"] == "variance_ratio"]["params"].unique()
        for params in logged:
            gap, m = closed_form_gap(cv[cv["params"] == params])
            checks.append(Check(place(task, params, len(logged) > 1), within(gap, TOLERANCE),
                                f"measured minus closed-form variance ratio {gap.text()} (means: "
                                f"measured {fmt(m['measured'])}, closed form {fmt(m['closed'])} "
                                f"at rho {fmt(m['rho'])}, beta {fmt(m['beta'])}; "
                                f"{fmt(m['steps'])} steps a seed)"))  # fmt: skip
    return checks


def study_checks(res: Results) -> list[Check]:
    """Checks of claim 1c from the cv-predicted study: per task, measured over closed-form
    variance as a geometric mean over the predictors, within `RATIO_BOUNDS`."""
    table = res.frame(STUDY)
    if table is None:
        return []
    checks = []
    for task, group in table.groupby("task", sort=False):
        ratios = group["measured_over_closed"].to_numpy(float)
        ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
        if len(ratios) < 2:
            continue
        logs = mean_interval(np.log(ratios).tolist())
        ratio = Estimate(math.exp(logs.value), math.exp(logs.lo), math.exp(logs.hi),
                         f"{len(ratios)} predictors")  # fmt: skip
        low, high = RATIO_BOUNDS
        inside = ratio.lo > low and ratio.hi < high
        outside = ratio.hi <= low or ratio.lo >= high
        align = group["alignment"].to_numpy(float)
        checks.append(Check(
            f"{task} (study)", True if inside else (False if outside else None),
            f"measured over closed-form variance {ratio.text()}, alignments "
            f"{fmt(np.nanmin(align))} to {fmt(np.nanmax(align))}, {int(group['draws'].iloc[0])} "
            "draws each",
        ))  # fmt: skip
    return checks


def verdicts(res: Results) -> list[Verdict]:
    """Verdicts of claims 1a, 1b and 1c on `res`."""
    gain, even, why = budget_checks(res)
    return [
        verdict(GAIN, gain),
        verdict(BREAK_EVEN, even, why),
        verdict(CLOSED_FORM, study_checks(res) + closed_form_checks(res), RATIO_WHY),
    ]
