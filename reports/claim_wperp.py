"""Claims 2a-2d: the W-perp guess (Wang, Markou and Campbell).

2a. Its guess is closer to the true gradient than the W^T and isotropic activity guesses
    (quality.csv cosine).
2b. The gap grows with width.
2c. k of about 10 captures most of the true dl/ds in the top-k subspace of Im(W~^T) at widths
    128 and 512 (their Figure 1; wperp_overlap.csv).
2d. The Newton-Schulz variant (fg-wperp-ns) approximates W-perp cheaply: about its cosine at a
    lower step time (quality.csv, cost.csv).
"""

from __future__ import annotations

import pandas as pd

from reports import wperp_overlap
from reports.claim_rows import PRESET, cosine, place, quality_at_end, rows
from reports.load import Results, number
from reports.style import fmt
from reports.sweeps import split_task
from reports.tables import cost_by_setting, flag
from reports.verdict import (
    Check,
    Claim,
    Estimate,
    Verdict,
    all_of,
    beats,
    exceeds,
    outcome,
    verdict,
)
from tasks.spec import parse_options

MOST = 0.5  # claim 2c: "most" of ||dl/ds||², the overlap's interval wholly above it
PAPER_WIDTHS = (128, 512)  # claim 2c: the widths of Wang et al.'s Figure 1
KEEP = 0.9  # claim 2d: the share of fg-wperp's cosine fg-wperp-ns must keep
SOURCE = "Wang, Markou and Campbell"

WPERP = Claim(
    "Claim 2a",
    SOURCE,
    "The W-perp guess is closer to the true gradient than the W^T and isotropic guesses",
    "cosine with the exact gradient at the last checkpoint (quality.csv), fg-wperp against "
    "fg-wt and fg-activity",
    PRESET,
)
WIDTH = Claim(
    "Claim 2b",
    SOURCE,
    "W-perp's advantage over the best other guess grows with width",
    "fg-wperp's cosine minus the better of fg-wt and fg-activity (interval: the ends of the two "
    "intervals), widest against narrowest width",
    PRESET,
)
OVERLAP = Claim(
    "Claim 2c",
    f"{SOURCE}, Figure 1",
    f"k of about {wperp_overlap.PAPER_K} captures most of the true dl/ds in the top-k subspace "
    f"of Im(W~^T) at widths {' and '.join(map(str, PAPER_WIDTHS))}",
    f"per width ({' and '.join(map(str, PAPER_WIDTHS))}) and hidden layer, the mean over "
    f"examples of ||V_k^T dl/ds||² / ||dl/ds||² at k = {wperp_overlap.PAPER_K} with its 95% "
    f"interval over the examples ({wperp_overlap.FILE}), above {fmt(MOST)}",
    PRESET,
)
NEWTON_SCHULZ = Claim(
    "Claim 2d",
    SOURCE,
    "The Newton-Schulz variant approximates W-perp cheaply",
    f"at the same k, fg-wperp-ns's cosine at the last checkpoint (quality.csv) minus {fmt(KEEP)} "
    "× fg-wperp's (interval: the ends of the two intervals) above 0, and fg-wperp-ns's step-time "
    "ratio to backprop wholly below fg-wperp's (cost.csv; noisy: undecided); both must hold",
    PRESET,
)
CLAIMS = (WPERP, WIDTH, OVERLAP, NEWTON_SCHULZ)
OVERLAP_WHY = (
    f"the results hold no {wperp_overlap.FILE} rows at k = {wperp_overlap.PAPER_K} and width "
    f"{' or '.join(map(str, PAPER_WIDTHS))} (the preset runs `{wperp_overlap.HOW}`)"
)
NEWTON_SCHULZ_WHY = (
    "no task has fg-wperp-ns and fg-wperp at the same k in both quality.csv and cost.csv"
)


def difference(a: Estimate, b: Estimate, scale: float = 1.0) -> Estimate:
    """a minus scale × b, its interval from the two intervals' ends (conservative)."""
    return Estimate(a.value - scale * b.value, a.lo - scale * b.hi, a.hi - scale * b.lo, a.basis)


def _cosine(q: pd.DataFrame, task: str, estimator: str) -> Estimate | None:
    found = q[(q["task"] == task) & (q["estimator"] == estimator)]
    return None if found.empty else cosine(found.iloc[0])


def guess_checks(res: Results) -> tuple[list[Check], list[Check]]:
    """Checks of claims 2a (each task) and 2b (each task base run at two or more widths)."""
    q = quality_at_end(res)
    if q is None:
        return [], []
    checks: list[Check] = []
    gaps: dict[str, list[tuple[float, Estimate]]] = {}
    for task in res.tasks():
        wperp, wt, iso = (_cosine(q, task, e) for e in ("fg-wperp", "fg-wt", "fg-activity"))
        if wperp is None or wt is None or iso is None:
            continue
        checks.append(Check(task, all_of([beats(wperp, wt), beats(wperp, iso)]),
                            f"cosine fg-wperp {wperp.text()}, fg-wt {wt.text()}, fg-activity "
                            f"{iso.text()}"))  # fmt: skip
        base, options = split_task(task)
        if "width" in options:
            best = wt if wt.value >= iso.value else iso
            gaps.setdefault(base, []).append((number(options["width"]), difference(wperp, best)))
    width_checks = []
    for base, points in gaps.items():
        if len({w for w, _ in points}) < 2:
            continue
        (narrow, small), (wide, large) = min(points), max(points)
        width_checks.append(Check(base, beats(large, small),
                                  f"gap {small.text()} at width {fmt(narrow)}, {large.text()} "
                                  f"at width {fmt(wide)}"))  # fmt: skip
    return checks, width_checks


def overlap_checks(res: Results) -> list[Check]:
    """Checks of claim 2c: each task, paper width and layer of wperp_overlap.csv at k = 10."""
    overlap = res.frame(wperp_overlap.FILE)
    if overlap is None:
        return []
    at_k = overlap[(overlap["k"] == wperp_overlap.PAPER_K) & overlap["width"].isin(PAPER_WIDTHS)]
    checks = []
    for r in at_k.to_dict("records"):
        share = Estimate(r["overlap"], r["lo"], r["hi"], f"{int(r['examples'])} examples")
        checks.append(Check(f"{r['task']} width {r['width']}, {r['layer']}", exceeds(share, MOST),
                            f"overlap at k = {wperp_overlap.PAPER_K} {share.text()} after "
                            f"{r['steps']} backprop steps"))  # fmt: skip
    return checks


def _time(cost: pd.DataFrame, task: str, estimator: str, params: str) -> tuple[Estimate, bool]:
    """A setting's step-time ratio to backprop from `cost_by_setting`, and whether it is noisy."""
    r = cost[(cost["task"] == task) & (cost["estimator"] == estimator)
             & (cost["params"] == params)].iloc[0]  # fmt: skip
    ratio = Estimate(r["time_ratio"], r["time_ratio_lo"], r["time_ratio_hi"], "cost cell")
    return ratio, flag(r["noisy"])


def newton_schulz_checks(res: Results) -> list[Check]:
    """Checks of claim 2d: each fg-wperp-ns setting with an fg-wperp setting of the same k on the
    same task, both in quality.csv and cost.csv."""
    q, cost_rows = quality_at_end(res), res.frame("cost.csv")
    if q is None or cost_rows is None:
        return []
    cost = cost_by_setting(cost_rows)
    costed = set(zip(cost["task"], cost["estimator"], cost["params"], strict=True))
    checks = []
    for task in res.tasks():
        here = q[q["task"] == task]
        ns = [r for r in rows(here, "fg-wperp-ns").to_dict("records")
              if (task, "fg-wperp-ns", r["params"]) in costed]  # fmt: skip
        for r in ns:
            k = parse_options(r["params"]).get("k", "")
            same = [w for w in rows(here, "fg-wperp", {"k": k}).to_dict("records")
                    if (task, "fg-wperp", w["params"]) in costed]  # fmt: skip
            if not same:
                continue
            w = same[0]
            mine, theirs = cosine(r), cosine(w)
            kept = difference(mine, theirs, KEEP)
            cos_ok = exceeds(kept, 0.0)
            t_ns, noisy_ns = _time(cost, task, "fg-wperp-ns", r["params"])
            t_w, noisy_w = _time(cost, task, "fg-wperp", w["params"])
            noisy = noisy_ns or noisy_w
            time_ok = None if noisy else beats(t_w, t_ns)
            checks.append(Check(
                place(task, r["params"], len(ns) > 1), all_of([cos_ok, time_ok]),
                f"cosine fg-wperp-ns {mine.text()}, fg-wperp {theirs.text()}, ns minus "
                f"{fmt(KEEP)} × fg-wperp {kept.text()} (cosine: {outcome(cos_ok)}); time ratio "
                f"fg-wperp-ns {t_ns.text()}, fg-wperp {t_w.text()}{' (noisy)' if noisy else ''} "
                f"(time: {outcome(time_ok)})",
            ))  # fmt: skip
    return checks


def verdicts(res: Results) -> list[Verdict]:
    """Verdicts of claims 2a-2d on `res`."""
    wperp, width = guess_checks(res)
    return [
        verdict(WPERP, wperp),
        verdict(WIDTH, width, "no task was run at two or more widths with the guesses"),
        verdict(OVERLAP, overlap_checks(res), OVERLAP_WHY),
        verdict(NEWTON_SCHULZ, newton_schulz_checks(res), NEWTON_SCHULZ_WHY),
    ]
