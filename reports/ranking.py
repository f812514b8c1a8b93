"""Tables: one overall ranking of the estimator settings across tasks, two ways, and the report's
first paragraph naming the winner of each.

(a) Time to target (AlgoPerf's score: Dahl et al., "Benchmarking Neural Network Training
Algorithms", 2023, section 4.5). Per task, each setting's time to target (median over seeds, a
seed that never reached it counting as infinite) over the fastest setting's is
`reports.profile.ratios`; the profile rho(tau) is the share of tasks with ratio <= tau, and the
score is its normalised area (1 / (TAU_MAX - 1)) * integral_1^TAU_MAX rho(tau) dtau, which is
the mean over tasks of max(0, TAU_MAX - r) / (TAU_MAX - 1): 1 when fastest on every task, 0 when
never within TAU_MAX of the fastest (never reaching the target, or not run, is r = infinity).
A task on which no setting reached the target is left out (it ranks nobody) and named.
Interval: percentile bootstrap over seeds (`DRAWS` resamples, generator seed `SEED`): within
each task and setting the runs are drawn with replacement, then medians, ratios and scores are
recomputed.

(b) Relative MSE per FLOP at matched cost (the quantity of `reports.baselines`): at every
quality checkpoint of every task, rel_mse x flop_ratio with rel_mse's 95% interval (envelope
over seeds, `reports.quality.over_seeds`, lower end clipped at 0) multiplied through; lower is
better. Over tasks and checkpoints (the whole backprop trajectory, not only its converged
end) the geometric mean, and the geometric means of the interval ends: an envelope that covers
the geometric mean whenever every checkpoint's interval covers its value, not a joint 95% level.
Exact gradients (rel_mse 0) are the reference, not ranked; only settings measured on every task
are. A setting with one seed on a task has no interval (its draws' interval at fixed
checkpoints says nothing of the seeds, and is zero for a deterministic estimator).

A rank is a finding only when the setting's interval is disjoint from the next one's; where
they overlap the table and the sentences say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from tabulate import tabulate

from reports.baselines import EXACT
from reports.load import KEYS, Results
from reports.profile import left_out, ratios, unreached
from reports.quality import over_seeds
from reports.reach import per_setting, runs_to_target
from reports.section import Section, skip, write_table
from reports.style import Style, apart, fmt, interval

TAU_MAX = 4.0  # AlgoPerf's r_max
DRAWS = 1000  # bootstrap resamples
SEED = 0  # the bootstrap's generator seed

TIME_TITLE = "Table: overall ranking by time to target (performance-profile score)"
TIME_QUESTION = "Across all tasks, which estimator setting reaches the target soonest?"
TIME_SOURCE = (
    "train.csv with each task's target from manifest.json: per task, time to target (median over "
    "seeds, never reached or not run = ∞) over the fastest setting's (as in the performance "
    f"profile; tasks no setting reached are left out); score = area under rho(tau) from 1 to "
    f"tau_max = {fmt(TAU_MAX)}, normalised to [0, 1]; 95% interval: percentile bootstrap over "
    f"seeds ({DRAWS} resamples, seed {SEED})."
)
MSE_TITLE = "Table: overall ranking by relative MSE per FLOP"
MSE_QUESTION = (
    "Across all tasks, which estimator setting gives the most accurate gradient per FLOP?"
)
MSE_SOURCE = (
    "quality.csv (`layer == total`, every checkpoint of every task, over seeds) and cost.csv "
    "(`flop_ratio`): rel_mse × flop_ratio, lower is better, with rel_mse's 95% interval (lower "
    "end clipped at 0); over tasks and checkpoints the geometric mean of the values and of the "
    "interval ends (an envelope, not a joint 95% level; none for a setting with one seed on a "
    "task); exact gradients are the reference and not ranked."
)


@dataclass(frozen=True)
class Ranked:
    """One setting's place: its label, score with interval, and tasks it was measured on."""

    label: str
    score: float
    lo: float
    hi: float
    tasks: int


def _areas(r: pd.DataFrame, tau_max: float) -> pd.DataFrame:
    """Each task's share of the area: max(0, tau_max - r) / (tau_max - 1)."""
    return (tau_max - r.clip(lower=1.0)).clip(lower=0.0) / (tau_max - 1.0)


def profile_score(r: pd.DataFrame, tau_max: float = TAU_MAX) -> pd.Series:
    """Per column of a tasks x settings ratio table: the normalised area under rho(tau) from 1
    to `tau_max`, i.e. the mean over tasks of max(0, tau_max - r) / (tau_max - 1)."""
    return _areas(r, tau_max).mean(axis=0)


def _bootstrap(runs: pd.DataFrame, style: Style, rng: np.random.Generator) -> pd.DataFrame:
    """DRAWS x settings: the profile score of each resample of the seeds."""
    rows = []
    for (task, est, params), group in runs.groupby(KEYS, sort=False):
        seconds = group["seconds"].to_numpy(float)
        picks = rng.integers(0, len(seconds), (DRAWS, len(seconds)))
        medians = np.median(seconds[picks], axis=1)  # (DRAWS,), inf when half never reached
        rows += [(f"{b}|{task}", est, params, m) for b, m in enumerate(medians)]
    reach = pd.DataFrame(rows, columns=[*KEYS, "seconds_median"])
    r = ratios(reach, style)  # each resample of a task is a row of its own
    r.index = [int(name.split("|", 1)[0]) for name in r.index]
    return _areas(r, TAU_MAX).groupby(level=0).mean()


def time_ranking(res: Results, style: Style) -> tuple[list[Ranked], int] | None:
    """Settings by profile score, best first, and the most seeds of any setting; None when no
    train rows with a target hold two settings or none reached a target."""
    runs = runs_to_target(res)
    if runs.empty:
        return None
    r = ratios(per_setting(runs), style)
    if r.shape[1] < 2 or not np.isfinite(r.to_numpy()).any():
        return None
    score = profile_score(r)
    boot = _bootstrap(runs, style, np.random.default_rng(SEED))
    seeds = runs.assign(
        label=[style.label(e, p) for e, p in zip(runs["estimator"], runs["params"], strict=True)]
    ).groupby(["label", "task"])["seed"]
    few = seeds.nunique().groupby(level=0).min() < 2  # a setting with one seed on a task
    lo = boot.quantile(0.025).mask(few.reindex(boot.columns, fill_value=False))
    hi = boot.quantile(0.975).mask(few.reindex(boot.columns, fill_value=False))
    tasks = np.isfinite(r).sum(axis=0)
    order = score.sort_values(ascending=False).index
    ranked = [
        Ranked(str(x), float(score[x]), float(lo[x]), float(hi[x]), int(tasks[x])) for x in order
    ]
    return ranked, int(runs.groupby(KEYS)["seed"].nunique().max())


def _geomean(values: pd.Series) -> float:
    """Geometric mean; 0 when a value is 0."""
    return 0.0 if (values <= 0).any() else float(np.exp(np.log(values).mean()))


def _mse_rows(res: Results) -> pd.DataFrame | None:
    """Inexact settings' quality checkpoints (over seeds) on the tasks with both quality and
    cost rows, with rel MSE x FLOP ratio (`value`) and its interval ends; None without them."""
    quality, cost = res.frame("quality.csv"), res.frame("cost.csv")
    if quality is None or cost is None:
        return None
    end = over_seeds(quality[quality["layer"] == "total"], [*KEYS, "checkpoint"])
    flops = cost.groupby(KEYS, sort=False)["flop_ratio"].median().rename("flop").reset_index()
    end = end.merge(flops, on=KEYS)
    end = end[~end["estimator"].isin(EXACT)]
    return end.assign(value=end["rel_mse"] * end["flop"],
                      lo=end["rel_mse_lo"].clip(lower=0) * end["flop"],
                      hi=end["rel_mse_hi"].clip(lower=0) * end["flop"])  # fmt: skip


def mse_ranking(res: Results, style: Style) -> list[Ranked] | None:
    """Inexact settings measured on every task with quality and cost rows, by rel MSE x FLOP
    ratio's geometric mean over tasks and checkpoints, lowest first; None without quality and
    cost rows for two such settings."""
    end = _mse_rows(res)
    if end is None:
        return None
    n = end["task"].nunique()
    ranked = []
    for (est, params), g in end.groupby(KEYS[1:], sort=False):
        if g["task"].nunique() == n and g[["value", "lo", "hi"]].notna().all().all():
            # one seed on a task: its interval covers the draws at fixed checkpoints, not the
            # seeds, and is zero for a deterministic estimator; no interval then, as in (a)
            one = bool((g["seeds"] < 2).any())
            lo, hi = (math.nan, math.nan) if one else (_geomean(g["lo"]), _geomean(g["hi"]))
            ranked.append(Ranked(style.label(str(est), str(params)), _geomean(g["value"]), lo,
                                 hi, n))  # fmt: skip
    return sorted(ranked, key=lambda x: x.score) if len(ranked) >= 2 else None


def _apart(a: Ranked, b: Ranked) -> bool:
    return apart(a.lo, a.hi, b.lo, b.hi)


def _table(ranked: list[Ranked], tasks: str) -> str:
    """The ranking as a pipe table; `tasks` heads the column of `Ranked.tasks`."""
    rows = []
    for i, x in enumerate(ranked):
        after = ranked[i + 1] if i + 1 < len(ranked) else None
        gap = "-" if after is None else ("yes" if _apart(x, after) else "no: overlap")
        if after is not None and not all(map(math.isfinite, (x.lo, x.hi, after.lo, after.hi))):
            gap = "no interval"
        rows.append([i + 1, x.label, interval(x.score, x.lo, x.hi), x.tasks, gap])
    headers = ["rank", "setting", "score [95% CI]", tasks, "apart from the next"]
    return tabulate(rows, headers, tablefmt="pipe", disable_numparse=True)


def winner(ranked: list[Ranked]) -> str:
    """ "X ranks first with s [lo, hi], ..." and whether first place is a finding."""
    first = ranked[0]
    tied = [x.label for x in ranked[1:] if not _apart(first, x)]
    head = f"{first.label} ranks first with {interval(first.score, first.lo, first.hi)}"
    if not math.isfinite(first.lo) or not math.isfinite(first.hi):
        return f"{head}; it has no interval, so first place is not a finding"
    if tied:
        return (f"{head}, but its interval overlaps that of {', '.join(tied)}, so first place "
                "is not a finding")  # fmt: skip
    second = ranked[1]
    return (f"{head}, apart from the runner-up {second.label}'s "
            f"{interval(second.score, second.lo, second.hi)}")  # fmt: skip


def _findings(ranked: list[Ranked]) -> list[str]:
    """Each run of consecutive ranks whose intervals overlap (none without intervals)."""
    if not all(math.isfinite(v) for x in ranked for v in (x.lo, x.hi)):
        return []
    out, start = [], 0
    for i in range(1, len(ranked) + 1):
        if i == len(ranked) or _apart(ranked[i - 1], ranked[i]):
            if i - start > 1:
                names = ", ".join(x.label for x in ranked[start:i])
                out.append(f"Ranks {start + 1}-{i} ({names}): neighbouring intervals overlap, "
                           "so their order is not a finding.")  # fmt: skip
            start = i
    return out


class Coverage(NamedTuple):
    """The tasks each ranking covers, in the results' task order: the time ranking's (some
    setting reached the target), the MSE ranking's (quality and cost rows), and the trained
    tasks the time ranking leaves out (no setting reached the target)."""

    timed: list[str]
    mse: list[str]
    unreached: list[str]


def coverage(res: Results, style: Style) -> Coverage:
    """What each ranking covers and what the time ranking leaves out (`Coverage`)."""
    runs = runs_to_target(res)
    reach = per_setting(runs) if not runs.empty else None
    timed = set() if reach is None else set(ratios(reach, style).index)
    end = _mse_rows(res)
    mse = set() if end is None else set(end["task"])
    order = res.tasks()
    return Coverage([t for t in order if t in timed], [t for t in order if t in mse],
                    [] if reach is None else unreached(reach))  # fmt: skip


def scale(res: Results, only: list[str] | None = None) -> str:
    """The scale measured: tasks (`only` these, when given) with their parameter counts, the
    device, the seeds."""
    tasks = []
    for task in [t for t in res.tasks() if only is None or t in only]:
        n = res.task_info(task, "n_params")
        tasks.append(f"{task} ({int(n):,} parameters)" if n is not None else task)
    env = res.manifest.get("environment", {})
    device = env.get("device_name", env.get("device", "an unrecorded device"))
    counts = [n for df in res.frames.values() if "seed" in df.columns
              for n in df.groupby(KEYS)["seed"].nunique()]  # fmt: skip
    low, high = (min(counts), max(counts)) if counts else (None, None)
    if low is None:
        each = "seeds unrecorded"
    elif low == high:
        each = f"{low} seed{'' if low == 1 else 's'} each"
    else:
        each = f"{low} to {high} seeds a setting"
    return (f"measured on {len(tasks)} task{'' if len(tasks) == 1 else 's'}, {'; '.join(tasks)}, "
            f"on {device} with {each}; a ranking at this scale need not hold for larger "
            "models")  # fmt: skip


def lead(res: Results, style: Style) -> str:
    """The report's first paragraph: the winner of each ranking and the scale measured; empty
    when neither ranking can be made."""
    timed = time_ranking(res, style)
    return _lead(res, coverage(res, style), timed[0] if timed else None, mse_ranking(res, style))


def _lead(
    res: Results, cover: Coverage, timed: list[Ranked] | None, mse: list[Ranked] | None
) -> str:
    parts = []
    if timed is not None:
        where = (f"; over the tasks some setting reached, not {', '.join(cover.unreached)}"
                 if cover.unreached else "")  # fmt: skip
        parts.append("By time to target across tasks (performance-profile score: the area under "
                     f"rho(tau) up to tau_max = {fmt(TAU_MAX)}, 1 = fastest on every task; "
                     f"bootstrap 95% interval over seeds, seed {SEED}{where}), "
                     f"{winner(timed)}.")  # fmt: skip
    if mse is not None:
        parts.append("By relative MSE per FLOP (geometric mean over tasks and quality "
                     "checkpoints of rel. MSE × FLOP ratio, lower is better; envelope of the "
                     f"checkpoints' 95% intervals), {winner(mse)}.")  # fmt: skip
    if not parts:
        return ""
    covered = (cover.timed if timed is not None else []) + (cover.mse if mse is not None else [])
    which = "Both rankings are" if len(parts) == 2 else "The ranking is"
    text = " ".join(parts) + f" {which} {scale(res, covered)}."
    if timed is not None and mse is not None and cover.timed != cover.mse:
        text += (f" The time ranking covers {', '.join(cover.timed)}; the MSE ranking "
                 f"{', '.join(cover.mse)}.")  # fmt: skip
    return text


def build(res: Results, style: Style, out: Path) -> list[Section]:
    sections = []
    cover = coverage(res, style)
    timed = time_ranking(res, style)
    if timed is None:
        sections.append(skip(TIME_TITLE, TIME_QUESTION, TIME_SOURCE,
                             "needs train.csv rows with a target for two or more settings, "
                             "one of which reaches it"))  # fmt: skip
    else:
        ranked, seeds = timed
        text = _table(ranked, "tasks reaching the target")
        note = [] if seeds > 1 else ["One seed per setting: no interval, no rank is a finding."]
        note += [left_out(cover.unreached)] if cover.unreached else []
        path = write_table(out, "ranking-time", TIME_TITLE, TIME_SOURCE, text)
        sections.append(Section(TIME_TITLE, TIME_QUESTION, TIME_SOURCE, [path],
                                [winner(ranked) + ".", *note, *_findings(ranked)],
                                body=text))  # fmt: skip
    mse = mse_ranking(res, style)
    if mse is None:
        sections.append(skip(MSE_TITLE, MSE_QUESTION, MSE_SOURCE,
                             "needs quality.csv and cost.csv rows for two or more inexact "
                             "settings measured on every task"))  # fmt: skip
    else:
        text = _table(mse, "tasks measured")
        path = write_table(out, "ranking-mse-per-flop", MSE_TITLE, MSE_SOURCE, text)
        sections.append(Section(MSE_TITLE, MSE_QUESTION, MSE_SOURCE, [path],
                                [winner(mse) + ".", *_findings(mse)],
                                body=text))  # fmt: skip
    sections[0].lead = _lead(res, cover, timed[0] if timed else None, mse)
    return sections
