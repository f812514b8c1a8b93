"""Table: every estimator against its compute-matched baseline, in relative MSE per FLOP and in
time to target.

The baseline of an estimator is a `backprop-subbatch` setting (backprop at fraction 1):
- `sparse-vjp` at `keep=f` is paired with `backprop-subbatch:fraction=f`, and `cv-predicted` at
  `fraction=f` with `backprop-subbatch:fraction=1-f` (backprop on its control micro-batch);
- every other estimator with the most expensive baseline setting in the results whose FLOP ratio
  does not exceed its own (so the baseline never gets more compute), or the cheapest one when
  every baseline costs more (the pairing then says so).
Where the paired fraction was not run, the FLOP rule is used and the command that adds it named.

Relative MSE per FLOP is `rel_mse x flop_ratio` (cost.csv's counted FLOP ratio, exact), with the
95% interval of `rel_mse` (`reports.quality.over_seeds`'s envelope over seeds, its lower end
clipped at 0, the quantity's range) multiplied through. At each quality checkpoint the verdict
is "beats" / "loses" only when the two intervals are disjoint, otherwise "not distinguishable".
Time to target is compared only over two or more seeds and only when the seeds' ranges are
disjoint; one seed is never a finding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from reports.load import KEYS, Results
from reports.quality import over_seeds
from reports.reach import per_setting, runs_to_target
from reports.section import Section, skip, write_table
from reports.style import BACKPROP, Style, fmt, slug
from tasks.spec import NONE, parse_options

SUBBATCH = "backprop-subbatch"
EXACT = (BACKPROP, "backprop-checkpoint")  # exact gradients: no baseline to beat in MSE
TITLE = "Table: compute-matched baselines"
QUESTION = (
    "Does each estimator give a better gradient per FLOP than plain backprop on a random "
    "sub-batch of matched cost, and does it reach the target sooner?"
)
SOURCE = (
    "quality.csv (`layer == total`, every checkpoint, over seeds), cost.csv (`flop_ratio`) and "
    "train.csv with the target from manifest.json; rel. MSE × FLOPs = rel_mse × flop_ratio "
    "with rel_mse's 95% interval (lower end clipped at 0); a verdict only where the intervals "
    "are disjoint"
)
HEADERS = ["estimator", "baseline", "FLOPs × (est. / base)", "checkpoint",
           "rel. MSE × FLOPs, est. [95% CI]", "baseline [95% CI]", "verdict"]  # fmt: skip
Key = tuple[str, str]


@dataclass(frozen=True)
class Pairing:
    """An estimator setting's baseline (`estimator`, `params`) and why it was chosen."""

    baseline: Key
    rule: str


def _fraction(params: str) -> float:
    """A baseline setting's fraction (backprop: 1)."""
    return float(parse_options(params).get("fraction", 1.0)) if params != NONE else 1.0


def _named_fraction(estimator: str, params: str) -> float | None:
    """The sub-batch fraction the issue pairs with: sparse-vjp's keep, cv-predicted's 1 - f."""
    options = parse_options(params) if params != NONE else {}
    try:
        if estimator == "sparse-vjp" and "keep" in options:
            return float(options["keep"])
        if estimator == "cv-predicted" and "fraction" in options:
            return 1.0 - float(options["fraction"])
    except ValueError:
        return None
    return None


def pair(key: Key, flops: Mapping[Key, float], baselines: list[Key]) -> Pairing | None:
    """The baseline of setting `key` among `baselines` (sub-batch settings and backprop), by the
    module's rules; None when there is no baseline or `key` is one."""
    if key[0] in (*EXACT, SUBBATCH) or not baselines:
        return None
    named = _named_fraction(*key)
    note = ""
    if named is not None:
        for b in baselines:
            if math.isclose(_fraction(b[1]), named, abs_tol=1e-9):
                return Pairing(b, f"paired at fraction {fmt(named)} by definition")
        note = (f"; fraction {fmt(named)} not run (add `--estimators "
                f"{SUBBATCH}:fraction={fmt(named)}`)")  # fmt: skip
    mine = flops.get(key, math.nan)
    priced = sorted((flops[b], b) for b in baselines if b in flops)
    if not priced or not math.isfinite(mine):
        return None
    cheaper = [b for b in priced if b[0] <= mine * (1 + 1e-9)]
    if cheaper:
        return Pairing(cheaper[-1][1], f"the costliest baseline within its FLOPs{note}")
    return Pairing(priced[0][1], f"every baseline costs more; the cheapest{note}")


def _per_flop(q: pd.DataFrame, key: Key, ratio: float) -> dict[float, tuple[float, float, float]]:
    """Per checkpoint: rel MSE x FLOP ratio with its interval (lower end clipped at 0)."""
    rows = q[(q["estimator"] == key[0]) & (q["params"] == key[1])]
    return {
        float(r["checkpoint"]): (r["rel_mse"] * ratio, max(r["rel_mse_lo"], 0.0) * ratio,
                                 max(r["rel_mse_hi"], 0.0) * ratio)
        for r in rows.to_dict("records")
    }  # fmt: skip


def verdict(mine: tuple[float, float, float], base: tuple[float, float, float]) -> str:
    """ "beats" / "loses" when the intervals (lower is better) are disjoint, else "not
    distinguishable"; "-" when an end is absent."""
    if not all(math.isfinite(v) for v in (*mine[1:], *base[1:])):
        return "-"
    if mine[2] < base[1]:
        return "beats"
    if mine[1] > base[2]:
        return "loses"
    return "not distinguishable"


def _cell(v: tuple[float, float, float]) -> str:
    return f"{fmt(v[0])} [{fmt(v[1])}, {fmt(v[2])}]"


def _reach(reach: pd.DataFrame, key: Key, base: Key) -> str | None:
    """A sentence comparing seconds to target, or None without train rows for both."""
    rows = {k: reach[(reach["estimator"] == k[0]) & (reach["params"] == k[1])] for k in (key, base)}
    if any(r.empty for r in rows.values()):
        return None
    a, b = (rows[k].iloc[0] for k in (key, base))

    def text(r: Mapping[str, Any]) -> str:
        seeds = f"{int(r['reached'])}/{int(r['runs'])} seeds reached"
        if not math.isfinite(r["seconds_median"]):
            return f"not reached in the median ({seeds})"
        return (f"{fmt(r['seconds_median'])} s [{fmt(r['seconds_min'])}, "
                f"{fmt(r['seconds_max'])}] ({seeds})")  # fmt: skip

    runs = min(int(a["runs"]), int(b["runs"]))
    if runs < 2:
        judged = "one seed: not a finding"
    elif a["seconds_max"] < b["seconds_min"]:
        judged = "faster in every seed"
    elif a["seconds_min"] > b["seconds_max"]:
        judged = "slower in every seed"
    else:
        judged = "the seeds' ranges overlap"
    return f"time to target: {text(a)} vs the baseline's {text(b)}, {judged}"


def _task(
    task: str, q: pd.DataFrame, flops: dict[Key, float], reach: pd.DataFrame, style: Style
) -> tuple[list[list[str]], list[str]]:
    settings = list(dict.fromkeys(zip(q["estimator"], q["params"], strict=True)))
    baselines = [k for k in settings if k[0] == SUBBATCH or k[0] == BACKPROP]
    rows: list[list[str]] = []
    findings: list[str] = []
    sparse_beats = []
    for key in settings:
        pairing = pair(key, flops, baselines)
        if pairing is None:
            continue
        base = pairing.baseline
        mine = _per_flop(q, key, flops[key])
        theirs = _per_flop(q, base, flops[base])
        judged = {c: verdict(mine[c], theirs[c]) for c in mine if c in theirs}
        name, bname = style.label(*key), style.label(*base)
        for c, v in judged.items():
            rows.append([name, bname, f"{fmt(flops[key])} / {fmt(flops[base])}", f"{c:.0f}",
                         _cell(mine[c]), _cell(theirs[c]), v])  # fmt: skip
        counts = {v: sum(x == v for x in judged.values()) for v in set(judged.values())}
        tally = ", ".join(f"{v} at {n}" for v, n in sorted(counts.items()))
        sentence = (f"On {task}, {name} vs {bname} ({pairing.rule}) in rel. MSE × FLOPs: "
                    f"{tally} of {len(judged)} checkpoints")  # fmt: skip
        time = _reach(reach, key, base)
        findings.append(f"{sentence}; {time}." if time else f"{sentence}.")
        if key[0] == "sparse-vjp" and base[0] == SUBBATCH:
            sparse_beats.append(counts.get("beats", 0) > 0)
    if sparse_beats and not any(sparse_beats):
        findings.append(f"On {task}, no sparse-vjp setting beats {SUBBATCH} in relative MSE per "
                        "FLOP at any checkpoint.")  # fmt: skip
    return rows, findings


def build(res: Results, style: Style, out: Path) -> list[Section]:
    quality, cost = res.frame("quality.csv"), res.frame("cost.csv")
    if quality is None or cost is None:
        return [skip(TITLE, QUESTION, SOURCE, "needs both quality.csv and cost.csv")]
    total = quality[quality["layer"] == "total"]
    q = over_seeds(total, [*KEYS, "checkpoint"])
    runs = runs_to_target(res)
    reach = per_setting(runs) if len(runs) else pd.DataFrame(columns=[*KEYS, "runs"])
    ratios = cost.groupby(KEYS, sort=False)["flop_ratio"].median()
    sections = []
    for task in dict.fromkeys(q["task"]):
        flops = {(e, p): float(v) for (t, e, p), v in ratios.items() if t == task}
        rows, findings = _task(task, q[q["task"] == task], flops,
                               reach[reach["task"] == task], style)  # fmt: skip
        title = f"{TITLE} on {task}"
        if not rows:
            sections.append(skip(title, QUESTION, SOURCE,
                                 f"no estimator with a {SUBBATCH} or {BACKPROP} baseline and "
                                 "a cost row on this task"))  # fmt: skip
            continue
        text = tabulate(rows, HEADERS, tablefmt="pipe", disable_numparse=True)
        path = write_table(out, f"baselines-{slug(task)}", title, SOURCE, text)
        sections.append(Section(title, QUESTION, SOURCE, [path], findings))
    return sections or [skip(TITLE, QUESTION, SOURCE, "no quality rows")]
