"""The SVD blog post's toy table, reproduced with a real low-rank implementation.

    python -m runners.study blog-table --threads 1 --out DIR
    python -m runners.study blog-table:seeds=5,lr=1.0,repeats=100 --threads 1 --out DIR

The blog's setup: its 2-layer MLP with 10 hidden units on four tabular sets, 20 steps of
full-batch gradient descent (plain SGD, no momentum), the first 10 exact to fit the subspace,
rank 2, the first layer projected. The estimator is `svd-subspace` in `lowrank` mode with its
default drift monitor (threshold calibrated on the warm-up, see `estimators.svd_subspace`) and
its rank held at the blog's 2 (`adaptive=false`); step 20 is an exact sentinel step. The
default rate 1.0 is the one of {0.1, 0.3, 1, 3} with the best mean backprop accuracy over the
four sets in a 5-seed check (0.78 / 0.83 / 0.86 / 0.84; at 0.1 the models stay about as
under-trained as the blog's baselines look); it was chosen for backprop, not for the
estimator.

Per data set and seed: final validation accuracy of backprop and of the estimator (same
initialisation); FLOPs (`FlopCounterMode`) of one projected step against one backprop step at the
fitted state, both for the whole step and for the first layer's weight-gradient work only (the
FLOPs attributed to the first layer minus its forward product); the time of one gradient
computation (`estimate`), both learners timed by `measurements.timing.interleaved` in the same
run (`warmup` rounds, then the median of `repeats` each); the FLOPs of the whole 20-step runs
(`measurements.train`, warm-up and sentinel included); the estimator's drift re-fits (`error` or
`stall` events; the one sentinel at step 20 can re-fit once) and its last sentinel's
projection error ||G - G P P^T|| / ||G||.

The blog numbers were measured with `--threads 1` (one intra-op thread; the runner's default is
every core): these models are far too small to gain from more, and on a shared machine extra
threads mostly add scheduler stalls. Whole-run times are not reported: a 20-step run takes
milliseconds, and single scheduler stalls of that size decide them.

Rows (`blog.csv`, `BLOG_COLUMNS`; replaced whole when the study runs again), one per data set
and seed, changes as fractions (-0.75 for -75%): dataset, label, seed, lr, baseline_acc, svd_acc,
delta_acc, wgrad_flop_change, step_flop_change, step_time_change, run_flop_change, refits, error,
and the blog's figures blog_baseline_acc, blog_svd_acc, blog_grad_flop_change, blog_time_change.
`python -m reports --results DIR` draws them per data set (mean ± standard deviation over seeds)
beside the blog's numbers (`reports/blog.py`); DIR may be a sweep's results folder.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from estimators import Batch, GradientEstimator, make_estimator, trainable_parameters
from estimators.svd_subspace import SvdSubspace, scoped_layers
from measurements.schema import BLOG_COLUMNS
from measurements.study import Rows, Study, StudyError
from measurements.timing import interleaved
from measurements.train import Run, train
from tasks import Task, get_task
from tasks.data import Splits

SPEC = "svd-subspace:k=2,warmup=10,scope=first,mode=lowrank,adaptive=false"
STEPS = 20
FILE = "blog.csv"
CPU = torch.device("cpu")


@dataclass(frozen=True)
class BlogRow:
    """The blog's figures for one data set (changes as fractions)."""

    label: str
    baseline: float
    svd: float
    grad_flops: float
    wall_time: float


BLOG = {
    "mlp-synthetic20": BlogRow("synthetic, 20 features", 0.53, 0.54, -0.75, -0.45),
    "mlp-breast-cancer": BlogRow("breast cancer, 30 features", 0.62, 0.65, -0.75, -0.40),
    "mlp-digits-1vr": BlogRow("digits 1-vs-rest, 64 features", 0.87, 0.87, -0.70, -0.35),
    "mlp-diabetes": BlogRow("diabetes binarised, 10 features", 0.73, 0.74, -0.70, -0.30),
}


@dataclass(frozen=True)
class Settings:
    """Seeds 0..seeds-1 per data set (of `BLOG`); the gradient-descent rate; the timing's
    warm-up rounds and timed rounds per seed."""

    seeds: int = 5
    lr: float = 1.0
    repeats: int = 100
    warmup: int = 5
    datasets: tuple[str, ...] = tuple(BLOG)

    def __post_init__(self) -> None:
        if min(self.seeds, self.repeats, self.warmup) < 1 or not self.lr > 0:
            raise StudyError("blog-table: seeds, repeats and warmup must be >= 1, lr > 0")
        unknown = [d for d in self.datasets if d not in BLOG]
        if unknown or not self.datasets:
            raise StudyError(
                f"blog-table: datasets must be some of {'+'.join(BLOG)}, got {self.datasets}"
            )


def blog_config(name: str, lr: float) -> tuple[Task, Splits]:
    """The task with the blog's schedule: full batch, 20 steps of plain gradient descent."""
    task = get_task(name)
    data = task.load()
    n = len(data.x_train)
    return dataclasses.replace(
        task, batch_size=n, steps=STEPS, eval_every=STEPS, optimizer="gd", lr=lr
    ), data


def _gd_step(est: GradientEstimator, batch: Batch, lr: float, noise: torch.Generator) -> None:
    estimate = est.estimate(batch, noise)
    with torch.no_grad():
        for name, p in trainable_parameters(est.model).items():
            p -= lr * estimate.grads[name]
    est.update(estimate)


def step_flops(
    est: GradientEstimator, batch: Batch, noise: torch.Generator | None
) -> tuple[int, int]:
    """FLOPs of one estimate: the whole step, and the first layer's weight-gradient work.

    The latter is what `FlopCounterMode` attributes to the model's first Linear/Conv layer in
    the step minus that layer's forward product (counted alone); the first layer needs no input
    gradient, so the rest is its weight (and bias) gradient work.
    """
    model = est.model
    first = next(iter(scoped_layers(model, "first"))).removesuffix(".weight")
    key = f"{type(model).__name__}.{first}"
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(batch[0])
    forward = sum(counter.get_flop_counts()[key].values())
    with FlopCounterMode(display=False) as counter:
        est.estimate(batch, noise)
    return counter.get_total_flops(), sum(counter.get_flop_counts()[key].values()) - forward


def step_costs(
    task: Task, data: Splits, seed: int, s: Settings, device: torch.device = CPU
) -> dict[str, float]:
    """FLOP and time changes of one projected step against one backprop step, fitted state."""
    torch.manual_seed(seed)
    model = task.model().to(device)
    svd = make_estimator(SPEC).bind(model, task.loss)
    exact = make_estimator("backprop").bind(model, task.loss)
    batch = (data.x_train.to(device), data.y_train.to(device))
    noise = torch.Generator(device=device).manual_seed(seed + 1)
    while svd.phase() != "projected":
        _gd_step(svd, batch, task.lr, noise)
    flops = {"svd": step_flops(svd, batch, noise), "exact": step_flops(exact, batch, noise)}
    ways = {
        "svd": lambda: svd.estimate(batch, noise),
        "exact": lambda: exact.estimate(batch, noise),
    }
    times = interleaved(ways, device, warmup=s.warmup, repeats=s.repeats, min_repeats=s.repeats)
    return {
        "wgrad_flop_change": flops["svd"][1] / flops["exact"][1] - 1,
        "step_flop_change": flops["svd"][0] / flops["exact"][0] - 1,
        "step_time_change": times.ratio("svd", "exact") - 1,
    }


def run_pair(task: Task, data: Splits, seed: int, device: torch.device = CPU) -> dict[str, float]:
    """Train backprop and the estimator from the same initialisation: accuracies, run FLOPs,
    the estimator's re-fits and its last sentinel's projection error."""
    out: dict[str, float] = {}
    for kind, spec in (("exact", "backprop"), ("svd", SPEC)):
        est = make_estimator(spec)
        result = train(Run(task, est, seed, task.lr, device), data)
        out[f"acc_{kind}"] = result.rows[-1]["val_acc"]
        out[f"flops_{kind}"] = result.rows[-1]["flops"]
        if isinstance(est, SvdSubspace):
            out["refits"] = sum(e.reason in ("error", "stall") for e in est.events)
            errors = [r["value"] for r in result.diagnostics if r["name"] == "projection_error"]
            out["error"] = errors[-1] if errors else math.nan
    return {
        "baseline_acc": out["acc_exact"],
        "svd_acc": out["acc_svd"],
        "delta_acc": out["acc_svd"] - out["acc_exact"],
        "run_flop_change": out["flops_svd"] / out["flops_exact"] - 1,
        "refits": out["refits"],
        "error": out["error"],
    }


def seed_row(
    name: str, task: Task, data: Splits, seed: int, s: Settings, device: torch.device
) -> dict[str, object]:
    """One row of blog.csv (`BLOG_COLUMNS`): data set `name`'s numbers for one seed beside the
    blog's figures for it."""
    blog = BLOG[name]
    row = {
        "dataset": name,
        "label": blog.label,
        "seed": seed,
        "lr": task.lr,
        **run_pair(task, data, seed, device),
        **step_costs(task, data, seed, s, device),
        "blog_baseline_acc": blog.baseline,
        "blog_svd_acc": blog.svd,
        "blog_grad_flop_change": blog.grad_flops,
        "blog_time_change": blog.wall_time,
    }
    return {column: row[column] for column in BLOG_COLUMNS}


def measure(s: Settings, device: torch.device) -> Rows:
    rows = []
    for name in s.datasets:
        task, data = blog_config(name, s.lr)
        rows += [seed_row(name, task, data, seed, s, device) for seed in range(s.seeds)]
    return {FILE: rows}


STUDY = Study(
    name="blog-table",
    summary="the SVD blog post's toy table: svd-subspace vs backprop accuracy, FLOPs and time",
    files=(FILE,),
    settings=Settings,
    smoke=Settings(seeds=1, repeats=2, warmup=1, datasets=("mlp-diabetes",)),
    measure=measure,
)
