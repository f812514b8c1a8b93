"""Claims 2a-2d: the W-perp guess (Wang, Markou and Campbell).

2a. Its guess is closer to the true gradient than the W^T and isotropic activity guesses
    (quality.csv cosine).
2b. The gap grows with width (its slope per doubling of the width, per seed).
2c. k of about 10 captures most of the true dl/ds in the top-k subspace of Im(W~^T) at widths
    128 and 512 (their Figure 1; wperp_overlap.csv).
2d. The Newton-Schulz variant (fg-wperp-ns) approximates W-perp cheaply: about its cosine at a
    lower step time (quality.csv, cost.csv).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports import wperp_overlap
from reports.claim_rows import (
    PRESET,
    cosine,
    paired,
    per_seed,
    place,
    quality_at_end,
    rows,
    seed_cosines,
)
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
    mean_interval,
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
    "per seed, fg-wperp's mean cosine with the exact gradient at the last checkpoint minus "
    "fg-wt's and minus fg-activity's (quality.csv; paired: the same checkpoint and batches), "
    "t-interval over seeds; both above 0",
    PRESET,
)
WIDTH = Claim(
    "Claim 2b",
    SOURCE,
    "W-perp's advantage over the best other guess grows with width",
    "per seed, the least-squares slope, per doubling of the width, of fg-wperp's cosine minus "
    "the better other guess's (by its mean over seeds at that width) over the widths run, "
    "t-interval over seeds, above 0",
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
    f"at the same k, per seed fg-wperp-ns's cosine at the last checkpoint (quality.csv) minus "
    f"{fmt(KEEP)} × fg-wperp's, t-interval over seeds, above 0, and fg-wperp-ns's step-time "
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


def guess_checks(res: Results) -> tuple[list[Check], list[Check]]:
    """Checks of claims 2a (each task) and 2b (each task base run at two or more widths)."""
    q = seed_cosines(res)
    if q is None:
        return [], []
    checks: list[Check] = []
    gaps: dict[str, list[tuple[float, dict[int, float], str]]] = {}
    for task in res.tasks():
        wperp, wt, iso = (per_seed(q, task, e) for e in ("fg-wperp", "fg-wt", "fg-activity"))
        over_wt, over_iso = paired(wperp, wt), paired(wperp, iso)
        if over_wt is None or over_iso is None:
            continue
        means = {n: float(np.mean(list(c.values()))) for n, c in
                 (("fg-wperp", wperp), ("fg-wt", wt), ("fg-activity", iso))}  # fmt: skip
        checks.append(Check(task, all_of([exceeds(over_wt, 0.0), exceeds(over_iso, 0.0)]),
                            f"fg-wperp minus fg-wt {over_wt.text()}, minus fg-activity "
                            f"{over_iso.text()} (mean cosines {fmt(means['fg-wperp'])}, "
                            f"{fmt(means['fg-wt'])}, {fmt(means['fg-activity'])})"))  # fmt: skip
        base, options = split_task(task)
        if "width" in options:
            name = "fg-wt" if means["fg-wt"] >= means["fg-activity"] else "fg-activity"
            best = wt if name == "fg-wt" else iso
            gap = {s: wperp[s] - best[s] for s in sorted(set(wperp) & set(best))}
            gaps.setdefault(base, []).append((number(options["width"]), gap, name))
    width_checks = []
    for base, points in gaps.items():
        if len({w for w, _, _ in points}) < 2:
            continue
        by_width = sorted(points, key=lambda p: p[0])
        slope = _slopes(by_width)
        if slope is None:
            continue
        at = ", ".join(f"{fmt(float(np.mean(list(g.values()))))} over {name} at width {fmt(w)}"
                       for w, g, name in by_width)  # fmt: skip
        width_checks.append(Check(base, exceeds(slope, 0.0),
                                  f"gap {at}; slope per doubling {slope.text()}"))  # fmt: skip
    return checks, width_checks


def _slopes(points: list[tuple[float, dict[int, float], str]]) -> Estimate | None:
    """Per seed, the least-squares slope of the gap against log2 of the width over the widths
    that seed has (two or more), with its 95% Student-t interval over those seeds; None without
    such a seed."""
    seeds = sorted({s for _, gap, _ in points for s in gap})
    slopes = []
    for s in seeds:
        xy = [(np.log2(w), gap[s]) for w, gap, _ in points if s in gap]
        if len({x for x, _ in xy}) >= 2:
            x, y = np.array(xy).T
            slopes.append(float(np.polyfit(x, y, 1)[0]))
    return mean_interval(slopes) if slopes else None


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


def _seeds(q: pd.DataFrame, task: str, params: str) -> dict[int, float]:
    """seed -> cosine of the setting with `params` on `task` (`seed_cosines` rows)."""
    found = q[(q["task"] == task) & (q["params"] == params)]
    return {int(s): float(c) for s, c in zip(found["seed"], found["cosine"], strict=True)}


def newton_schulz_checks(res: Results) -> list[Check]:
    """Checks of claim 2d: each fg-wperp-ns setting with an fg-wperp setting of the same k on the
    same task, both in quality.csv and cost.csv."""
    q, cost_rows, seeded = quality_at_end(res), res.frame("cost.csv"), seed_cosines(res)
    if q is None or cost_rows is None or seeded is None:
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
            kept = paired(_seeds(seeded, task, r["params"]), _seeds(seeded, task, w["params"]),
                          KEEP)  # fmt: skip
            cos_ok = None if kept is None else exceeds(kept, 0.0)
            t_ns, noisy_ns = _time(cost, task, "fg-wperp-ns", r["params"])
            t_w, noisy_w = _time(cost, task, "fg-wperp", w["params"])
            noisy = noisy_ns or noisy_w
            time_ok = None if noisy else beats(t_w, t_ns)
            checks.append(Check(
                place(task, r["params"], len(ns) > 1), all_of([cos_ok, time_ok]),
                f"cosine fg-wperp-ns {mine.text()}, fg-wperp {theirs.text()}, ns minus "
                f"{fmt(KEEP)} × fg-wperp {'-' if kept is None else kept.text()} (cosine: "
                f"{outcome(cos_ok)}); time ratio "
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
