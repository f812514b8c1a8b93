"""Validation accuracy against wall-clock time on vit-digits: backprop vs cv-predicted.

    python -m runners.study cv-vit-digits[:seeds=3,fractions=0.5+0.75+0.875,steps=800]
    python -m runners.study 'cv-vit-digits:extra=fraction=0.75;buffer=64' --threads 1

Tests the claim of Ciosek et al. (2025): predicting the gradient of 3/4 of each batch reaches a
given validation accuracy sooner in wall-clock time than full backprop. Every run is a real
`measurements.train.train` run (seconds count training steps only, evaluation excluded). Per seed,
backprop trains for the task's 800 steps (`steps`) first; its training time is then the time
budget of each cv-predicted run (the run's `seconds` cap, steps uncapped at 100 x `steps`), so
all methods get the same time. The cv-predicted learners are `cv-predicted:fraction=F` for each
of `fractions`, then each of `extra` (cv-predicted parameters with `;` for `,`); their order
alternates from seed to seed.

Rows (`reports/cv_vit_digits.py` draws them, mean and standard error over seeds):
- `cv_vit_digits_evals.csv`: every eval of every run (step, seconds, FLOPs, validation
  accuracy), with the mean alignment cos(g_pred(C), g_true(C)) and residual of the steps since
  the previous eval: accuracy by step and against wall-clock time.
- `cv_vit_digits_budget.csv`: per run and fraction of the time budget (`budgets`), the accuracy
  of the last eval within that fraction of backprop's training time at that seed.
- `cv_vit_digits_reach.csv`: per run and target (`targets`: 0.90 and the task target 0.94),
  seconds, FLOPs and step to reach it (`measurements.schema.to_target`; inf if never).
- `cv_vit_digits_runs.csv`: per run, its steps, training seconds, ms per step, the time ratio
  to backprop's ms per step at that seed, the mean alignment and residual over training, and
  the break-even alignment at that time ratio (beta = 1) and at the nominal cost ratio.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

import torch

from estimators import make_estimator
from measurements.schema import to_target
from measurements.studies.cv_predicted import break_even, cv_spec, where
from measurements.study import Rows, Study
from measurements.train import Run, TrainResult, train
from tasks import get_task

EVALS = "cv_vit_digits_evals.csv"
BUDGET = "cv_vit_digits_budget.csv"
REACH = "cv_vit_digits_reach.csv"
RUNS = "cv_vit_digits_runs.csv"
BACKPROP = "backprop"
DIAGNOSTICS = ("alignment", "residual", "break_even")


@dataclass(frozen=True)
class Settings:
    """`task` by name or spec (`;` for `,` in its options); steps and eval_every 0: the task's
    own."""

    task: str = "vit-digits"
    seeds: int = 3
    fractions: tuple[float, ...] = (0.5, 0.75, 0.875)
    extra: tuple[str, ...] = ()
    steps: int = 0
    eval_every: int = 0
    targets: tuple[float, ...] = (0.90, 0.94)
    budgets: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)


def learners(s: Settings) -> list[str]:
    """Backprop, then the cv-predicted specs in the order of the first seed."""
    specs = [cv_spec(f"fraction={f:g}") for f in s.fractions]
    return [BACKPROP, *specs, *(cv_spec(e.replace(";", ",")) for e in s.extra)]


def _fraction(spec: str) -> float:
    """The fraction of each batch a learner predicts (0 for backprop)."""
    return 0.0 if spec == BACKPROP else float(make_estimator(spec).config["fraction"])


def _diagnostics(result: TrainResult) -> dict[tuple[int, str], float]:
    return {(int(d["step"]), d["name"]): float(d["value"]) for d in result.diagnostics}


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else math.nan


def run_rows(
    spec: str, result: TrainResult, budget_s: float, bp_ms: float, s: Settings, device: torch.device
) -> Rows:
    """The rows of one run, per file."""
    rows, last = result.rows, result.rows[-1]
    fraction = _fraction(spec)
    key = {"task": last["task"], "learner": spec, "fraction": fraction, "seed": last["seed"],
           **where(device)}  # fmt: skip
    diag = _diagnostics(result)
    evals = [{**key, "estimator": r["estimator"], "params": r["params"], "step": r["step"],
              "seconds": r["seconds"], "flops": r["flops"], "train_loss": r["train_loss"],
              "val_acc": r["val_acc"], "status": r["status"],
              "alignment": diag.get((r["step"], "alignment"), math.nan),
              "residual": diag.get((r["step"], "residual"), math.nan)}
             for r in rows]  # fmt: skip
    budget = [{**key, "budget_s": budget_s, "budget_fraction": b, "seconds": b * budget_s,
               "val_acc": [r["val_acc"] for r in rows if r["seconds"] <= b * budget_s][-1]}
              for b in s.budgets]  # fmt: skip
    reach = []
    for target in s.targets:
        hit = to_target(rows, target)
        reach.append({**key, "target": target, "seconds": hit["seconds"], "flops": hit["flops"],
                      "step": hit["step"], "reached": math.isfinite(hit["seconds"])})  # fmt: skip
    ms = 1e3 * last["seconds"] / last["step"] if last["step"] else math.nan
    mean = {name: _mean([v for (_, n), v in diag.items() if n == name]) for name in DIAGNOSTICS}
    run = {**key, "budget_s": budget_s, "steps": last["step"], "seconds": last["seconds"],
           "ms_per_step": ms, "time_ratio": ms / bp_ms, "final_acc": last["val_acc"],
           "status": last["status"], "alignment": mean["alignment"], "residual": mean["residual"],
           "break_even_time": break_even(ms / bp_ms, fraction),
           "break_even_nominal": mean["break_even"]}  # fmt: skip
    return {EVALS: evals, BUDGET: budget, REACH: reach, RUNS: [run]}


def measure(s: Settings, device: torch.device) -> Rows:
    task = get_task(s.task.replace(";", ","))
    data = task.load().to(device)
    steps = s.steps or task.steps
    if s.eval_every:
        task = dataclasses.replace(task, eval_every=s.eval_every)
    specs = learners(s)
    out: Rows = {EVALS: [], BUDGET: [], REACH: [], RUNS: []}
    for seed in range(s.seeds):
        bp = train(Run(task, make_estimator(BACKPROP), seed, task.lr, device, steps), data)
        budget_s = float(bp.rows[-1]["seconds"])
        results = {BACKPROP: bp}
        for spec in specs[1:] if seed % 2 == 0 else specs[:0:-1]:
            run = Run(task, make_estimator(spec), seed, task.lr, device, 100 * steps, budget_s)
            results[spec] = train(run, data)
        bp_ms = 1e3 * budget_s / bp.rows[-1]["step"]
        for spec in specs:
            for file, rows in run_rows(spec, results[spec], budget_s, bp_ms, s, device).items():
                out[file] += rows
    return out


SMOKE = Settings(task="vit-digits:depth=1;dim=8;heads=1", seeds=2, fractions=(),
                 extra=("fraction=0.5;buffer=1",), steps=2, eval_every=1,
                 targets=(0.05, 0.94))  # fmt: skip
STUDY = Study(
    name="cv-vit-digits",
    summary="accuracy vs wall-clock time on vit-digits: backprop vs cv-predicted at equal time",
    files=(EVALS, BUDGET, REACH, RUNS),
    settings=Settings,
    smoke=SMOKE,
    measure=measure,
)
