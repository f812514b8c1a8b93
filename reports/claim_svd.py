"""Claims 4a-4c: subspace projection (svd-subspace; the SVD-subspace blog post).

4a. Accuracy within 0.03 of backprop's on the blog's four data sets (train.csv; and blog.csv's
    `delta_acc`, the blog's own toy setting, when the results hold it).
4b. At least 30% less step time (cost.csv; and blog.csv's `step_time_change` when present).
4c. 70-90% fewer first-layer weight-gradient FLOPs (blog.csv `wgrad_flop_change`).
"""

from __future__ import annotations

from reports import blog
from reports.claim_rows import PRESET, validation_size
from reports.load import Results
from reports.reach import runs_to_target
from reports.style import BACKPROP, fmt
from reports.sweeps import split_task
from reports.tables import cost_by_setting, flag
from reports.verdict import (
    Check,
    Claim,
    Estimate,
    Verdict,
    accuracy_difference,
    below,
    exceeds,
    mean_interval,
    verdict,
)

BLOG_TASKS = ("mlp-breast-cancer", "mlp-diabetes", "mlp-synthetic20", "mlp-digits-1vr")
ACC_TOLERANCE = 0.03  # the blog's largest accuracy loss
TIME_BOUND = 0.7  # the blog's smallest time saving, 30%
FLOP_CHANGE = -0.7  # claim 4c: the blog's smallest first-layer gradient-FLOP saving, 70%
SOURCE = "the SVD-subspace blog post"

ACCURACY = Claim(
    "Claim 4a",
    SOURCE,
    f"Subspace projection's accuracy is within {ACC_TOLERANCE} of backprop's on the blog's four "
    "data sets",
    "per seed, svd-subspace minus backprop final validation accuracy (train.csv; and, as "
    "the blog settings, blog.csv's `delta_acc` from the same initialisation), t-interval over "
    "seeds widened by the validation set's sampling error (at least sqrt((|d| - d²) / n) for "
    f"a difference d on n examples), above -{ACC_TOLERANCE}",
    PRESET,
)
TIME = Claim(
    "Claim 4b",
    SOURCE,
    f"Subspace projection takes at least {fmt(100 * (1 - TIME_BOUND))}% less time per step "
    "than backprop",
    "svd-subspace's step time over backprop's, interleaved (cost.csv), its interval below "
    f"{fmt(TIME_BOUND)}, the whole step's FLOP ratio beside it (the first layer's "
    "weight-gradient FLOPs alone are claim 4c's); and, as the blog settings, per data set of "
    "blog.csv the change of one gradient computation's median time (`step_time_change`), "
    f"t-interval over seeds below {fmt(TIME_BOUND - 1)}",
    PRESET,
)
FLOPS = Claim(
    "Claim 4c",
    SOURCE,
    "Subspace projection needs 70-90% fewer first-layer gradient FLOPs than backprop",
    "per data set, blog.csv's `wgrad_flop_change` (the first layer's weight-gradient FLOPs of a "
    "projected step against a backprop step, a fraction), t-interval over seeds; tested as at "
    f"least {fmt(-100 * FLOP_CHANGE)}% fewer (interval wholly below {fmt(FLOP_CHANGE)}), the "
    "90% end reported, not tested",
    PRESET,
)
CLAIMS = (ACCURACY, TIME, FLOPS)
BLOG_WHY = f"the results hold no {blog.FILE} (the preset runs `python -m runners.study blog-table`)"


def accuracy_checks(res: Results) -> list[Check]:
    """Checks of claim 4a: each blog task in train.csv, then each data set of blog.csv."""
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
        diff = accuracy_difference([final["svd"][s] - final["bp"][s] for s in common],
                                   validation_size(res, task))  # fmt: skip
        acc.append(Check(task, exceeds(diff, -ACC_TOLERANCE),
                         f"accuracy difference {diff.text()}"))  # fmt: skip
    table = res.frame(blog.FILE)
    if table is not None:
        for dataset, g in table.groupby("dataset", sort=False):
            diff = accuracy_difference(g["delta_acc"].tolist(), validation_size(res, str(dataset)))
            acc.append(Check(f"blog setting: {dataset}", exceeds(diff, -ACC_TOLERANCE),
                             f"accuracy difference {diff.text()}"))  # fmt: skip
    return acc


def time_checks(res: Results) -> list[Check]:
    """Checks of claim 4b: each blog task's svd-subspace settings in cost.csv, then each data
    set of blog.csv."""
    cost = res.frame("cost.csv")
    time = []
    for r in [] if cost is None else cost_by_setting(cost).to_dict("records"):
        if r["estimator"] != "svd-subspace" or split_task(r["task"])[0] not in BLOG_TASKS:
            continue
        ratio = Estimate(r["time_ratio"], r["time_ratio_lo"], r["time_ratio_hi"], "cost cell")
        noisy = flag(r["noisy"])
        time.append(Check(r["task"], None if noisy else below(ratio, TIME_BOUND),
                          f"time ratio {ratio.text()}{' (noisy)' if noisy else ''}, whole-step "
                          f"FLOP ratio {fmt(r['flop_ratio'])}"))  # fmt: skip
    table = res.frame(blog.FILE)
    for dataset, g in [] if table is None else table.groupby("dataset", sort=False):
        change = mean_interval(g["step_time_change"].tolist())
        time.append(Check(f"blog setting: {dataset}", below(change, TIME_BOUND - 1),
                          f"step time change {change.text()} (blog "
                          f"{fmt(g['blog_time_change'].iloc[0])})"))  # fmt: skip
    return time


def flop_checks(res: Results) -> list[Check]:
    """Checks of claim 4c: each data set of blog.csv."""
    table = res.frame(blog.FILE)
    if table is None:
        return []
    checks = []
    for dataset, g in table.groupby("dataset", sort=False):
        change = mean_interval(g["wgrad_flop_change"].tolist())
        checks.append(Check(str(dataset), below(change, FLOP_CHANGE),
                            f"first-layer weight-gradient FLOP change {change.text()} (blog "
                            f"{fmt(g['blog_grad_flop_change'].iloc[0])})"))  # fmt: skip
    return checks


def verdicts(res: Results) -> list[Verdict]:
    """Verdicts of claims 4a-4c on `res`."""
    return [
        verdict(ACCURACY, accuracy_checks(res)),
        verdict(TIME, time_checks(res)),
        verdict(FLOPS, flop_checks(res), BLOG_WHY),
    ]
