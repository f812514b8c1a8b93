"""The overall ranking (`reports.ranking`): the profile score against a hand computation, the
winner of each ranking on hand-made results folders, intervals that overlap named as such, and
the first paragraph at the top of `index.md`.

The folders are synthetic, in the documented format: each training run is two evals, step 0
(accuracy 0.1) and step 10 at the run's time to target (accuracy 0.9, or 0.1 when it never gets
there), so each run's time to target is the number given below.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from measurements.schema import COLUMNS
from reports import build_reports
from reports.load import Results, load_results
from reports.ranking import TAU_MAX, mse_ranking, profile_score, scale, time_ranking
from reports.style import Style

INF = math.inf
BACKPROP = ("backprop", "-")
FAST = ("sparse-vjp", "keep=0.5")
SLOW = ("svd-subspace", "k=1")
NEVER = ("fg-weight", "-")
# Per task and setting: each seed's time to target (s).
TIMES = {
    "task-a": {BACKPROP: (2.0, 2.1, 1.9), FAST: (1.0, 1.1, 0.9), SLOW: (3.0, 3.2, 2.8),
               NEVER: (INF,) * 3},
    "task-b": {BACKPROP: (1.0,) * 3, FAST: (1.5,) * 3, SLOW: (6.0,) * 3, NEVER: (INF,) * 3},
}  # fmt: skip
# Per task and setting at checkpoint 10: rel_mse, its lo and hi (4 times these at checkpoint 0);
# and the FLOP ratio.
MSE = {
    "task-a": {FAST: (2.0, 1.5, 2.5), SLOW: (1.0, 0.8, 1.2), BACKPROP: (0.0, 0.0, 0.0)},
    "task-b": {FAST: (8.0, 7.0, 9.0), SLOW: (4.0, 3.0, 5.0), BACKPROP: (0.0, 0.0, 0.0)},
}
FLOPS = {BACKPROP: 1.0, FAST: 0.5, SLOW: 0.25}


def _write(folder: Path, file: str, rows: list[dict]) -> None:
    pd.DataFrame(rows, columns=list(COLUMNS[file])).to_csv(folder / file, index=False,
                                                           na_rep="nan")  # fmt: skip


def _folder(root: Path, times: dict, mse: dict | None = None, seeds: int = 3) -> Path:
    folder = root / "results"
    folder.mkdir()
    tasks = list(times)
    manifest = {
        "config": {"preset": "test", "tasks": tasks, "seeds": seeds},
        "environment": {"device": "cpu", "device_name": "a test CPU"},
        "cells": {},
        "tasks": {t: {"n_params": 1000, "target_acc": 0.8} for t in tasks},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    train = []
    for task, settings in times.items():
        for (est, params), seconds in settings.items():
            for seed, t in enumerate(seconds):
                reached = math.isfinite(t)
                evals = ((0, 0.0, 0.1), (10, t if reached else 9.0, 0.9 if reached else 0.1))
                for step, at, acc in evals:
                    train.append({"task": task, "estimator": est, "params": params, "seed": seed,
                                  "lr": 0.1, "step": step, "seconds": at, "flops": step,
                                  "train_loss": 1.0, "val_acc": acc, "cell": "c",
                                  "status": "completed" if step else "ok"})  # fmt: skip
    _write(folder, "train.csv", train)
    if mse is not None:
        quality, cost = [], []
        for task, settings in mse.items():
            for (est, params), (value, lo, hi) in settings.items():
                key = {"task": task, "estimator": est, "params": params}
                cost.append({**key, "flop_ratio": FLOPS[(est, params)], "cell": "c"})
                for seed in range(seeds):
                    for checkpoint, scale in ((0, 4.0), (10, 1.0)):
                        quality.append({**key, "seed": seed, "checkpoint": checkpoint,
                                        "layer": "total", "cosine": 0.5, "cosine_lo": 0.4,
                                        "cosine_hi": 0.6, "rel_bias": 0.0, "rel_bias_se": 0.1,
                                        "bias_p": 0.5, "rel_variance": value * scale,
                                        "rel_mse": value * scale, "rel_mse_lo": lo * scale,
                                        "rel_mse_hi": hi * scale, "work_mse": 1.0,
                                        "work_mse_lo": 0.9, "work_mse_hi": 1.1,
                                        "work_scale": 1.0, "work_floor": 2.0, "draws": 8,
                                        "cell": "c"})  # fmt: skip
        _write(folder, "quality.csv", quality)
        _write(folder, "cost.csv", cost)
    return folder


def _style(times: dict) -> Style:
    return Style.of(k for settings in times.values() for k in settings)


def test_profile_score_is_the_normalised_area_under_rho() -> None:
    # tau_max 4: a ratio r adds (4 - r) / 3 on its task, 0 beyond 4; the score is the mean.
    r = pd.DataFrame({"x": [1.0, 3.0], "y": [2.0, 1.0], "z": [INF, 5.0]}, index=["a", "b"])
    score = profile_score(r, tau_max=4.0)
    assert score["x"] == pytest.approx((1 + 1 / 3) / 2)
    assert score["y"] == pytest.approx((2 / 3 + 1) / 2)
    assert score["z"] == 0.0
    # The same as integrating rho(tau) = share of tasks with ratio <= tau numerically.
    taus = [1 + 3 * (i + 0.5) / 30000 for i in range(30000)]
    rho = [sum(v <= tau for v in r["x"]) / 2 for tau in taus]
    assert score["x"] == pytest.approx(sum(rho) / len(rho), abs=1e-4)


def test_time_ranking_names_the_known_winner_apart_from_the_runner_up(tmp_path: Path) -> None:
    res = load_results(_folder(tmp_path, TIMES))
    ranked, seeds = time_ranking(res, _style(TIMES))  # type: ignore[misc]
    assert seeds == 3
    labels = [x.label for x in ranked]
    assert labels == ["sparse-vjp", "backprop", "svd-subspace", "fg-weight"]
    # Ratios: task-a fast 1, backprop 2, slow 3; task-b backprop 1, fast 1.5, slow 6.
    by = {x.label: x for x in ranked}
    assert by["sparse-vjp"].score == pytest.approx((1 + 2.5 / 3) / 2)
    assert by["backprop"].score == pytest.approx((2 / 3 + 1) / 2)
    assert by["svd-subspace"].score == pytest.approx((1 / 3) / 2)
    assert by["fg-weight"].score == 0.0 and by["fg-weight"].tasks == 0
    # sparse-vjp is fastest on task-a in every resample; backprop's task-a ratio is at most
    # 2.1 / 0.9, at least 1.9 / 1.1: its score lies in [0.778, 0.879], below 0.917.
    assert by["sparse-vjp"].lo == pytest.approx(by["sparse-vjp"].score)
    assert 0.77 <= by["backprop"].lo <= by["backprop"].hi <= 0.88
    index = build_reports(res.folder, tmp_path / "report").read_text()
    table = (tmp_path / "report" / "tables" / "ranking-time.md").read_text()
    assert "| 1      | sparse-vjp" in table and "0.917 [0.917, 0.917]" in table
    lead = index.split("\n\n")[1]
    assert lead.startswith("By time to target across tasks (performance-profile score")
    assert "sparse-vjp ranks first with 0.917 [0.917, 0.917]" in lead
    assert "apart from the runner-up backprop's" in lead
    assert "The ranking is measured on 2 tasks, task-a (1,000 parameters)" in lead
    assert "on a test CPU with 3 seeds each" in lead


def test_overlapping_intervals_make_first_place_no_finding(tmp_path: Path) -> None:
    times = {"task-a": {BACKPROP: (1.0, 3.0, 2.0), FAST: (1.5, 2.5, 2.2)}}
    res = load_results(_folder(tmp_path, times))
    ranked, _ = time_ranking(res, _style(times))  # type: ignore[misc]
    assert ranked[0].hi >= ranked[1].lo  # the resamples cross
    index = build_reports(res.folder, tmp_path / "report").read_text()
    assert "so first place is not a finding" in index.split("\n\n")[1]
    assert (
        "Ranks 1-2 (backprop, sparse-vjp)" in index or "Ranks 1-2 (sparse-vjp, backprop)" in index
    )


def test_one_seed_has_no_interval_and_no_finding(tmp_path: Path) -> None:
    times = {"task-a": {BACKPROP: (2.0,), FAST: (1.0,)}}
    res = load_results(_folder(tmp_path, times, seeds=1))
    ranked, seeds = time_ranking(res, _style(times))  # type: ignore[misc]
    assert seeds == 1 and all(math.isnan(x.lo) for x in ranked)
    index = build_reports(res.folder, tmp_path / "report").read_text()
    assert "no interval, so first place is not a finding" in index
    assert "| no interval" in index and "Ranks 1-2" not in index  # no overlap claimed either


def test_a_task_no_setting_reached_is_left_out_and_named(tmp_path: Path) -> None:
    """TIMES plus task-c, where nothing reached the target: the scores are TIMES's alone
    (task-c would pull every score down by a third), and the report names task-c."""
    times = {**TIMES, "task-c": {BACKPROP: (INF,) * 3, FAST: (INF,) * 3}}
    res = load_results(_folder(tmp_path, times))
    ranked, _ = time_ranking(res, _style(times))  # type: ignore[misc]
    by = {x.label: x for x in ranked}
    assert by["sparse-vjp"].score == pytest.approx((1 + 2.5 / 3) / 2)
    assert by["sparse-vjp"].lo == pytest.approx(by["sparse-vjp"].score)
    index = build_reports(res.folder, tmp_path / "report").read_text()
    left = "Left out: task-c, where no setting reached the target in the median over seeds"
    assert index.count(left) == 2  # the ranking's table and the performance profile
    assert "seed 0; over the tasks some setting reached, not task-c)" in index.split("\n\n")[1]


def test_nothing_reaching_the_target_is_a_skip_not_a_ranking(tmp_path: Path) -> None:
    times = {"task-a": {BACKPROP: (INF,) * 3, FAST: (INF,) * 3}}
    res = load_results(_folder(tmp_path, times))
    assert time_ranking(res, _style(times)) is None
    index = build_reports(res.folder, tmp_path / "report").read_text()
    assert "**Skipped:** needs train.csv rows with a target" in index
    assert index.split("\n\n")[1].startswith("Built by")  # no lead without a ranking


def test_mse_ranking_is_the_geometric_mean_over_tasks_and_checkpoints(tmp_path: Path) -> None:
    res = load_results(_folder(tmp_path, TIMES, MSE))
    ranked = mse_ranking(res, _style(TIMES))
    assert ranked is not None
    # rel_mse x flop_ratio at checkpoint 10: fast 2 x 0.5 = 1 and 8 x 0.5 = 4, slow 1 x 0.25 and
    # 4 x 0.25; with checkpoint 0's 4x, the geometric mean of (v_a, v_b, 4 v_a, 4 v_b) is
    # 2 sqrt(v_a v_b): fast 4, slow 1; ends the same way; exact backprop is not ranked.
    assert [x.label for x in ranked] == ["svd-subspace", "sparse-vjp"]
    slow, fast = ranked
    assert slow.score == pytest.approx(1.0) and fast.score == pytest.approx(4.0)
    assert slow.lo == pytest.approx(2 * math.sqrt(0.2 * 0.75))
    assert slow.hi == pytest.approx(2 * math.sqrt(0.3 * 1.25))
    assert fast.lo == pytest.approx(2 * math.sqrt(0.75 * 3.5))
    lead = build_reports(res.folder, tmp_path / "report").read_text().split("\n\n")[1]
    assert "95% intervals), svd-subspace ranks first with 1 [0.775, 1.22], apart" in lead
    assert f"tau_max = {TAU_MAX:g}" in lead and "Both rankings are measured on 2 tasks" in lead


def test_the_scale_says_the_seeds_each_setting_has(tmp_path: Path) -> None:
    """3 seeds of backprop and 1 of another setting: "1 to 3 seeds a setting", not the
    configuration's seed count."""
    train = pd.DataFrame({"task": ["a"] * 4, "estimator": ["backprop"] * 3 + ["x"],
                          "params": ["-"] * 4, "seed": [0, 1, 2, 0]})  # fmt: skip
    manifest = {"config": {"tasks": ["a"], "seeds": 10}, "tasks": {"a": {"n_params": 5}}}
    text = scale(Results(tmp_path, manifest, {"train.csv": train}))
    assert "measured on 1 task, a (5 parameters), on an unrecorded device with 1 to 3 seeds a " \
        "setting;" in text  # fmt: skip


def test_the_lead_lists_the_tasks_each_ranking_covers(tmp_path: Path) -> None:
    """task-c is trained but has no quality rows: the time ranking covers it, the MSE ranking
    does not, and the lead says which covers what; task-d, with no setting at its target, is
    in neither."""
    times = {**TIMES, "task-c": {BACKPROP: (1.0,) * 3, FAST: (2.0,) * 3},
             "task-d": {BACKPROP: (INF,) * 3, FAST: (INF,) * 3}}  # fmt: skip
    res = load_results(_folder(tmp_path, times, MSE))
    lead = build_reports(res.folder, tmp_path / "report").read_text().split("\n\n")[1]
    assert "Both rankings are measured on 3 tasks, task-a (1,000 parameters); task-b" in lead
    assert lead.endswith(
        "The time ranking covers task-a, task-b, task-c; the MSE ranking task-a, task-b."
    )


def test_one_seed_gives_the_mse_ranking_no_interval(tmp_path: Path) -> None:
    """With one seed, quality.csv's intervals cover the draws at fixed checkpoints only (zero
    for a deterministic estimator): no interval, and first place is not a finding."""
    res = load_results(_folder(tmp_path, TIMES, MSE, seeds=1))
    ranked = mse_ranking(res, _style(TIMES))
    assert ranked is not None and all(math.isnan(x.lo) and math.isnan(x.hi) for x in ranked)
    assert ranked[0].score == pytest.approx(1.0)  # the values stay
    lead = build_reports(res.folder, tmp_path / "report").read_text().split("\n\n")[1]
    assert "svd-subspace ranks first with 1 [-, -]; it has no interval, so first place" in lead
