"""A small hand-made results folder whose claim verdicts are known (`tests/test_claims.py`).

The tables are written as the sweep and the studies write them and read back by
`load_results`. Built so that:
- 1a holds (cv-predicted 0.105 above backprop at equal wall-clock on vit-digits; a ratio_every=5
  run there, worse, must be left out), 1b holds (alignment below break-even and no gain on
  mlp-mnist1d), 1c holds only on the study's vit-digits (measured over closed-form variance
  0.95, 1, 1.05 for three predictors; 2, 2.1, 1.9 on bagnet-digits) and on width 128 (variance
  ratio 0.02 above the closed form there, 0.31 at width 512, undecided on mlp-mnist1d);
- 2a and 2b hold (fg-wperp's cosine interval wholly above the others', its gap wider at width
  512), 2c holds only at width 128 (overlap 0.8 at k = 10; 0.3 and 0.5 at width 512), 2d holds
  only at width 128 (fg-wperp-ns keeps its cosine and is 4x cheaper there; at 512 its cosine
  drops);
- 3a does not hold (bias p 0.001 per seed), 3b is not measurable (no minvar sketch), 3c holds
  (keep=0.25 reaches the target in about half backprop's time on bagnet-digits; keep=0.5 never
  reaches it);
- 4a holds only on blog.csv's diabetes (svd-subspace 0.11 below backprop in train.csv and on
  blog.csv's breast cancer), 4b holds only on blog.csv's breast cancer (step time 41% less;
  20% on diabetes; no svd-subspace cost row), 4c does not hold
  (the first layer's gradient FLOPs 50% and 61% fewer, not 70%).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from measurements.schema import COLUMNS, STUDY_COLUMNS

CV = "fraction=0.75,buffer=64,refit_every=1,ridge=0.1,beta=1,fit_beta=true,ratio_every=0"
CV_RATIO = CV.replace("ratio_every=0", "ratio_every=5")
WPERP = "k=10,tangents=1,noise=gaussian"
NS = "k=10,iterations=5,steps=5,tangents=1,noise=gaussian"
SPARSE = "sketch=outer,keep={},axis=row,layers=all,share=true"
WIDTHS = ("mlp-mnist1d:width=128", "mlp-mnist1d:width=512")
TASKS = ["vit-digits", "mlp-mnist1d", *WIDTHS, "mlp-breast-cancer", "bagnet-digits"]
SEEDS = (0, 1, 2)


def write(folder: Path, file: str, rows: list[dict]) -> None:
    columns = COLUMNS.get(file) or STUDY_COLUMNS[file]
    pd.DataFrame(rows, columns=list(columns)).to_csv(folder / file, index=False, na_rep="nan")


def manifest(folder: Path, tasks: list[str], n_val: int | None = None) -> None:
    """A manifest with every task's target validation accuracy 0.9 (and `n_val` validation
    examples when given; unsaid, as in folders written before the manifest said)."""
    info = {"target_acc": 0.9, "batch_size": 10} | ({} if n_val is None else {"n_val": n_val})
    manifest = {"config": {"tasks": tasks}, "cells": {}, "tasks": {t: info for t in tasks}}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def run(task: str, est: str, params: str, seed: int, accs: list[float]) -> list[dict]:
    """One training run: an eval each second with these validation accuracies."""
    return [{"task": task, "estimator": est, "params": params, "seed": seed, "lr": 0.01,
             "step": 10 * i, "seconds": float(i), "flops": 1e6 * i, "train_loss": 1.0,
             "val_acc": acc, "status": "ok", "cell": f"train/{task}/{est}/seed={seed}"}
            for i, acc in enumerate(accs)]  # fmt: skip


def _train() -> list[dict]:
    rows = []
    for s in SEEDS:
        # vit-digits: at the shorter run's 3 s, cv 0.9 + 0.005 s against backprop 0.8; the ratio
        # run, evaluated 5 steps later each second at 0, would change that if it were read
        rows += run("vit-digits", "backprop", "-", s, [0.1, 0.5, 0.7, 0.8])
        rows += run("vit-digits", "cv-predicted", CV, s, [0.1, 0.6, 0.8, 0.9 + 0.005 * s, 0.95])
        rows += [{**r, "step": r["step"] + 5}
                 for r in run("vit-digits", "cv-predicted", CV_RATIO, s, [0.0] * 5)]  # fmt: skip
        # mlp-mnist1d: cv 0.2 + 0.01 s below backprop at 2 s
        rows += run("mlp-mnist1d", "backprop", "-", s, [0.1, 0.4, 0.6])
        rows += run("mlp-mnist1d", "cv-predicted", CV, s, [0.1, 0.3, 0.4 - 0.01 * s])
        # breast cancer: svd-subspace ends 0.1 + 0.01 s below backprop
        rows += run("mlp-breast-cancer", "backprop", "-", s, [0.5, 0.95])
        rows += run("mlp-breast-cancer", "svd-subspace", "k=2", s, [0.5, 0.85 - 0.01 * s])
        # bagnet-digits: backprop reaches 0.9 at 4, 4, 5 s; keep=0.25 at 2 s (ratios 0.5, 0.5,
        # 0.4); keep=0.5 never within its 5 s
        rows += run("bagnet-digits", "backprop", "-", s, [0.1, 0.5, 0.6, 0.8, *[0.7] * (s == 2),
                                                          0.95])  # fmt: skip
        rows += run("bagnet-digits", "sparse-vjp", SPARSE.format(0.25), s, [0.1, 0.5, 0.92])
        rows += run("bagnet-digits", "sparse-vjp", SPARSE.format(0.5), s, [0.1, 0.2, 0.3, 0.4,
                                                                          0.5, 0.6])  # fmt: skip
    return rows


def _diagnostic(task: str, params: str, seed: int, step: int, name: str, value: float) -> dict:
    return {"task": task, "estimator": "cv-predicted", "params": params, "seed": seed,
            "lr": 0.01, "step": step, "name": name, "value": value, "cell": "d"}  # fmt: skip


def _diagnostics() -> list[dict]:
    rows = [_diagnostic("mlp-mnist1d", CV, s, step, name, value)
            for s in SEEDS for step in (10, 20)
            for name, value in (("alignment", 0.3 + 0.01 * s), ("break_even", 0.8))]  # fmt: skip
    # Ratio runs: at step 5 beta 1 and rho 0.6 (closed form 0.64), at step 10 beta 0.5 (0.73),
    # each measured at closed form + gap(seed); step 7 logs no ratio, its rho and beta are not
    # read. Their alignment 0.99 would move claim 1b's on mlp-mnist1d if it were read.
    gaps = {WIDTHS[0]: (0.01, 0.02, 0.03), WIDTHS[1]: (0.3, 0.31, 0.32),
            "mlp-mnist1d": (0.0, 0.1, 0.2)}  # fmt: skip
    for task, per_seed in gaps.items():
        rho = 0.99 if task == "mlp-mnist1d" else 0.6
        for s, gap in zip(SEEDS, per_seed, strict=True):
            for step, beta in ((5, 1.0), (7, 0.0), (10, 0.5)):
                rows += [_diagnostic(task, CV_RATIO, s, step, "alignment", rho),
                         _diagnostic(task, CV_RATIO, s, step, "beta", beta)]  # fmt: skip
                if step != 7:
                    closed = 1 - beta * (2 - beta) * rho**2
                    rows.append(_diagnostic(task, CV_RATIO, s, step, "variance_ratio",
                                            closed + gap))  # fmt: skip
    return rows


def quality_rows(
    task: str, est: str, params: str, cosine: float, bias_p: float, spread: float = 0.0
) -> list[dict]:
    """A setting's rows at checkpoint 10: cosine + spread (seed - 1) ± 0.05 at each seed."""
    return [{"task": task, "estimator": est, "params": params, "seed": s, "checkpoint": 10,
             "layer": "total", "cosine": cosine + spread * (s - 1),
             "cosine_lo": cosine + spread * (s - 1) - 0.05,
             "cosine_hi": cosine + spread * (s - 1) + 0.05, "rel_bias": 0.2, "rel_bias_se": 0.01,
             "bias_stat": 9.0,
             "bias_p": bias_p, "rel_variance": 1.0, "rel_mse": 1.0, "rel_mse_lo": 0.9,
             "rel_mse_hi": 1.1, "work_mse": 1.0, "work_mse_lo": 0.9, "work_mse_hi": 1.1,
             "work_scale": 1.0, "work_floor": 10.0, "draws": 8, "cell": "q"}
            for s in SEEDS]  # fmt: skip


def _quality() -> list[dict]:
    rows = []
    # fg-wperp's cosine varies by seed (0.02 a seed at width 128, 0.04 at 512), the others not
    for task, wperp, ns, spread in zip(WIDTHS, (0.6, 0.9), (0.85, 0.5), (0.02, 0.04), strict=True):
        rows += quality_rows(task, "fg-wperp", WPERP, wperp, 0.5, spread)
        rows += quality_rows(task, "fg-wperp-ns", NS, ns, 0.5)
        rows += quality_rows(task, "fg-wt", "tangents=1", 0.3, 0.5)
        rows += quality_rows(task, "fg-activity", "tangents=1", 0.1, 0.5)
    rows += quality_rows("mlp-mnist1d", "sparse-vjp", "sketch=uniform,keep=0.25", 0.5, 0.001)
    return rows


def _cost(task: str, est: str, params: str, ratio: float, half: float, noisy: bool) -> dict:
    return {"task": task, "estimator": est, "params": params, "device": "cpu", "flops": 1000,
            "elementwise": 50, "flop_ratio": 10.0, "elementwise_ratio": 2.0,
            "step_seconds": 0.1, "step_seconds_median": 0.1, "time_ratio": ratio,
            "time_ratio_lo": ratio - half, "time_ratio_hi": ratio + half, "aa_ratio": 1.0,
            "pairs": 15, "noisy": noisy, "prime_flops": 0, "prime_seconds": 0.0,
            "peak_bytes": 100, "memory_ratio": 1.1, "cell": "c"}  # fmt: skip


def _costs() -> list[dict]:
    # fg-wperp-ns 5 [4.5, 5.5] against fg-wperp 20 [18, 22]; at width 512 the ns cell is noisy
    settings = (("fg-wperp", WPERP, 20.0), ("fg-wperp-ns", NS, 5.0))
    return [_cost(task, est, params, ratio, 0.1 * ratio, est == "fg-wperp-ns" and task == WIDTHS[1])
            for task in WIDTHS for est, params, ratio in settings]  # fmt: skip


def _overlap() -> list[dict]:
    # (width, layer, overlap at k = 10, half-width); k = 9 and width 64 are not read
    cells = ((128, "hidden.0", 0.8, 0.05), (512, "hidden.0", 0.3, 0.05),
             (512, "hidden.1", 0.5, 0.1), (64, "hidden.0", 0.1, 0.05))  # fmt: skip
    return [{"task": "mlp-mnist1d", "width": width, "steps": 300, "layer": layer, "k": k,
             "overlap": overlap - shift, "lo": overlap - shift - half,
             "hi": overlap - shift + half, "examples": 256}
            for width, layer, overlap, half in cells
            for k, shift in ((9, 0.05), (10, 0.0))]  # fmt: skip


def _blog() -> list[dict]:
    # breast cancer: delta_acc -0.1 - 0.01 s, FLOPs -50%, time -40% - 1% s; diabetes: 0.01 s,
    # -60% - 1% s and -20%
    per_set = {"mlp-breast-cancer": (lambda s: -0.1 - 0.01 * s, lambda s: -0.5,
                                     lambda s: -0.4 - 0.01 * s),
               "mlp-diabetes": (lambda s: 0.01 * s, lambda s: -0.6 - 0.01 * s,
                                lambda s: -0.2)}  # fmt: skip
    return [{"dataset": dataset, "label": dataset, "seed": s, "lr": 1.0, "baseline_acc": 0.8,
             "svd_acc": 0.8 + delta(s), "delta_acc": delta(s), "wgrad_flop_change": wgrad(s),
             "step_flop_change": -0.3, "step_time_change": time(s), "run_flop_change": -0.1,
             "refits": 1, "error": 0.9, "blog_baseline_acc": 0.6, "blog_svd_acc": 0.62,
             "blog_grad_flop_change": -0.75, "blog_time_change": -0.4}
            for dataset, (delta, wgrad, time) in per_set.items() for s in SEEDS]  # fmt: skip


def _variance() -> list[dict]:
    # the cv-predicted study: measured over closed-form variance per predictor
    per_task = {"vit-digits": (0.95, 1.0, 1.05), "bagnet-digits": (2.0, 2.1, 1.9)}
    return [{"task": task, "batch": 64, "control": 16, "fraction": 0.75, "seed": 0,
             "device": "cpu", "draws": 200, "predictor": f"buffer {4 * (i + 1)}", "beta": 1.0,
             "alignment": 0.3 + 0.3 * i, "measured_over_closed": ratio}
            for task, ratios in per_task.items() for i, ratio in enumerate(ratios)]  # fmt: skip


def write_results(folder: Path) -> Path:
    """Every table of the claims above in `folder`."""
    write(folder, "train.csv", _train())
    write(folder, "diagnostics.csv", _diagnostics())
    write(folder, "quality.csv", _quality())
    write(folder, "cost.csv", _costs())
    write(folder, "wperp_overlap.csv", _overlap())
    write(folder, "blog.csv", _blog())
    write(folder, "cv_predicted_variance.csv", _variance())
    manifest(folder, TASKS)
    return folder
