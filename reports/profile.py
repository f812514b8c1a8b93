"""Figure: an AlgoPerf-style performance profile across tasks (Dahl et al., "Benchmarking
Neural Network Training Algorithms", 2023; Dolan and Moré, 2002).

For each task, each estimator setting's time to target (median over seeds, a seed that never
reached the target counting as infinite) is divided by the fastest setting's on that task; the
profile rho(tau) is the fraction of tasks on which that ratio is at most tau. A setting that
never reached the target on a task, or was not run on it, never counts on that task. A task
on which no setting reached the target says nothing about relative speed: it is left out of the
profile (as Dolan and Moré leave out problems no solver solves) and named. Settings that reach
no task's target are named in one finding instead of drawn as lines along 0.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reports.load import Results
from reports.reach import per_setting, runs_to_target
from reports.section import Section, skip
from reports.style import Style, fmt, log_axis, new_figure, save

TITLE = "Figure: performance profile across tasks"
QUESTION = (
    "Across tasks, how often is each estimator the fastest to the target, or within a factor "
    "tau of the fastest?"
)
SOURCE = (
    "train.csv with each task's target from manifest.json: time to target per setting and task "
    "(median over seeds, never reached = ∞), divided by the fastest setting's on that task; "
    "rho(tau) = fraction of the tasks with that ratio <= tau, over the tasks where some setting "
    "reached the target."
)

LINES = ("-", "--", "-.", ":")
TICKS = (1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 1e4, 1e5, 1e6)


def ratios(reach: pd.DataFrame, style: Style) -> pd.DataFrame:
    """Tasks x setting labels: time to target over the task's fastest (inf: never / not run);
    only tasks where some setting reached the target (`unreached` names the others)."""
    reach = reach.assign(label=[style.label(e, p) for e, p in
                                zip(reach["estimator"], reach["params"], strict=True)])  # fmt: skip
    table = reach.pivot(index="task", columns="label", values="seconds_median")
    table = table[[label for label in style.labels.values() if label in table.columns]]
    best = table.min(axis=1)
    reached = np.isfinite(best)
    return table[reached].div(best[reached], axis=0).fillna(math.inf)


def unreached(reach: pd.DataFrame) -> list[str]:
    """The tasks of `reach` (`per_setting` rows) where no setting reached the target in the
    median over seeds, in order of appearance."""
    best = reach.groupby("task", sort=False)["seconds_median"].min()
    return [str(t) for t, v in best.items() if not np.isfinite(v)]


def left_out(tasks: list[str]) -> str:
    """The sentence naming the tasks `ratios` leaves out."""
    return (f"Left out: {', '.join(tasks)}, where no setting reached the target in the median "
            "over seeds (no time ratio to compare).")  # fmt: skip


def figure(r: pd.DataFrame, style: Style) -> tuple[Figure, list[str]]:
    """The profile of the ratio table `r` (tasks x settings, at least one finite ratio) and its
    findings. A setting that reached no task's target (rho = 0 at every tau) is not drawn: they
    are named in one line instead of drawn as lines along 0."""
    finite = r.to_numpy()[np.isfinite(r.to_numpy())]
    tau_max = max(2.0, float(finite.max()) * 1.5)
    taus = np.geomspace(1.0, tau_max, 400)
    fig, (ax,) = new_figure(1, width=7.5, height=4.0)
    findings, never = [], []
    n = len(r)
    drawn = [label for label in r.columns if np.isfinite(r[label].to_numpy()).any()]
    for line, label in zip(LINES * len(r.columns), drawn, strict=False):
        values = r[label].to_numpy()
        rho = (values[None, :] <= taus[:, None]).mean(axis=1)
        ax.step(taus, rho, where="post", color=style.colour(label), label=label, lw=1.8, ls=line)
        fastest = int((values <= 1.0).sum())
        within2 = int((values <= 2.0).sum())
        reached = int(np.isfinite(values).sum())
        findings.append(
            f"{label} is the fastest on {fastest}/{n} tasks, within 2× of the fastest on "
            f"{within2}/{n}, and reaches the target (median over seeds) on {reached}/{n}; its "
            f"largest finite ratio is {fmt(values[np.isfinite(values)].max())}."
        )
    never = [label for label in r.columns if label not in drawn]
    if never:
        findings.append(
            f"{len(never)} of {len(r.columns)} settings reach the target on none of the {n} "
            f"tasks (median over seeds), so their profile is 0 at every tau and is not drawn: "
            f"{', '.join(never)}."
        )
    note = f"\n{len(never)} settings that never reached a target not drawn" if never else ""
    log_axis(ax, "x")
    ax.set_xticks([t for t in TICKS if t <= tau_max])
    ax.set_xlim(1.0, tau_max)
    ax.set_ylim(-0.02, 1.02)
    ax.set(xlabel="tau: time to target / fastest setting's (log scale)",
           ylabel=f"fraction of tasks (of {n}) within tau",
           title="performance profile, time to target" + note)  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    fig.legend(loc="outside right upper", fontsize="small")
    return fig, findings


def build(res: Results, style: Style, out: Path) -> list[Section]:
    runs = runs_to_target(res)
    if runs.empty:
        return [skip(TITLE, QUESTION, SOURCE, "the results hold no train.csv rows with a target")]
    reach = per_setting(runs)
    r = ratios(reach, style)
    if r.shape[1] < 2:
        return [skip(TITLE, QUESTION, SOURCE, "only one estimator setting was trained")]
    if not np.isfinite(r.to_numpy()).any():
        return [skip(TITLE, QUESTION, SOURCE,
                     "no setting reached its task's target in the median over seeds")]  # fmt: skip
    fig, findings = figure(r, style)
    tasks = ", ".join(r.index)
    missing = unreached(reach)
    findings += [left_out(missing)] if missing else []
    return [Section(TITLE, QUESTION, SOURCE + f" Tasks: {tasks}.",
                    save(fig, out, "performance-profile"), findings)]  # fmt: skip
