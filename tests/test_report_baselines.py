"""The compute-matched baseline table and the memory-vs-time figure, from hand-made tables whose
verdicts are known."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from reports import baselines, memory_time
from reports.baselines import Pairing, pair, verdict
from reports.build import style_of
from reports.load import Results
from reports.memory_time import front

TASK = "mlp-mnist1d"
SUB = ("backprop-subbatch", "fraction=0.25")
SUB_HALF = ("backprop-subbatch", "fraction=0.5")
BP = ("backprop", "-")
CK = ("backprop-checkpoint", "segments=2")
SPARSE = ("sparse-vjp", "sketch=uniform,keep=0.25,axis=row")
CV = ("cv-predicted", "fraction=0.75,buffer=8")
FG = ("fg-weight", "tangents=1")
SPSA = ("spsa", "pairs=1")
FLOPS = {SUB: 0.25, SUB_HALF: 0.5, BP: 1.0, CK: 1.2, SPARSE: 0.51, CV: 0.58, FG: 1.0, SPSA: 0.7}


def test_sparse_vjp_and_cv_predicted_are_paired_by_their_fractions() -> None:
    subs = [SUB, SUB_HALF, BP]
    assert pair(SPARSE, FLOPS, subs) == Pairing(SUB, "paired at fraction 0.25 by definition")
    assert pair(CV, FLOPS, subs).baseline == SUB  # control fraction 1 - 0.75
    keep_half = ("sparse-vjp", "keep=0.5")
    assert pair(keep_half, {**FLOPS, keep_half: 0.75}, subs).baseline == SUB_HALF


def test_others_get_the_costliest_baseline_within_their_flops() -> None:
    subs = [SUB, SUB_HALF, BP]
    assert pair(FG, FLOPS, subs).baseline == BP
    assert pair(SPSA, FLOPS, subs).baseline == SUB_HALF
    cheap = ("spsa", "pairs=0")
    found = pair(cheap, {**FLOPS, cheap: 0.1}, subs)
    assert found is not None and found.baseline == SUB and "costs more" in found.rule
    # A paired fraction that was not run falls back to the FLOP rule and names the command.
    tenth = ("sparse-vjp", "keep=0.1")
    found = pair(tenth, {**FLOPS, tenth: 0.3}, subs)
    assert found is not None and found.baseline == SUB and "fraction=0.1" in found.rule


def test_baselines_and_exact_estimators_are_not_paired() -> None:
    for key in (SUB, BP, CK):
        assert pair(key, FLOPS, [SUB, BP]) is None


def test_a_verdict_needs_disjoint_intervals() -> None:
    assert verdict((1.0, 0.8, 1.2), (2.0, 1.5, 2.5)) == "beats"
    assert verdict((3.0, 2.6, 3.2), (2.0, 1.5, 2.5)) == "loses"
    assert verdict((2.0, 1.4, 2.6), (2.0, 1.5, 2.5)) == "not distinguishable"
    assert verdict((1.8, 1.2, 2.4), (2.0, 1.5, 2.5)) == "not distinguishable"
    assert verdict((2.2, 1.6, 2.8), (2.0, 1.5, 2.5)) == "not distinguishable"
    assert verdict((2.0, float("nan"), 2.6), (2.0, 1.5, 2.5)) == "-"


def test_the_front_keeps_only_settings_nothing_beats_on_both_axes() -> None:
    points = pd.DataFrame({"time_ratio": [1.0, 0.5, 1.5, 0.6, 2.0],
                           "memory_ratio": [1.0, 0.3, 0.2, 0.3, 0.2]})  # fmt: skip
    assert front(points) == [1, 2]


def _results(tmp_path: Path, rel_mse: dict[tuple[str, str], float], seeds: int = 1) -> Results:
    """One task, three checkpoints; rel_mse interval ± 10% of the value at every checkpoint."""
    quality, cost, train = [], [], []
    for (est, params), mse in rel_mse.items():
        for seed in range(seeds):
            for checkpoint in (0, 100, 200):
                quality.append({"task": TASK, "estimator": est, "params": params, "seed": seed,
                                "checkpoint": checkpoint, "layer": "total", "rel_mse": mse,
                                "rel_mse_lo": 0.9 * mse, "rel_mse_hi": 1.1 * mse})  # fmt: skip
            for step, acc in ((0, 0.1), (10, 0.9)):
                train.append({"task": TASK, "estimator": est, "params": params, "seed": seed,
                              "lr": 0.1, "step": step, "seconds": step * (1 + seed) * mse,
                              "flops": step, "train_loss": 1.0, "val_acc": acc,
                              "status": "ok"})  # fmt: skip
        cost.append({"task": TASK, "estimator": est, "params": params,
                     "flop_ratio": FLOPS[(est, params)], "time_ratio": 1.0, "time_ratio_lo": 0.9,
                     "time_ratio_hi": 1.1, "aa_ratio": 1.0, "noisy": False,
                     "memory_ratio": 1.0, "elementwise_ratio": 1.0,
                     "step_seconds": 0.01})  # fmt: skip
    frames = {}
    for name, rows in (("quality.csv", quality), ("cost.csv", cost), ("train.csv", train)):
        frame = pd.DataFrame(rows)
        for column in (
            "cosine",
            "cosine_lo",
            "cosine_hi",
            "rel_bias",
            "rel_bias_se",
            "bias_p",
            "rel_variance",
            "work_mse",
            "work_mse_lo",
            "work_mse_hi",
            "work_scale",
        ):
            if name == "quality.csv":
                frame[column] = 0.0
        frames[name] = frame
    manifest = {"config": {"tasks": [TASK]}, "tasks": {TASK: {"target_acc": 0.8}}}
    return Results(tmp_path, manifest, frames)


def _findings(res: Results, tmp_path: Path) -> list[str]:
    sections = baselines.build(res, style_of(res), tmp_path)
    assert len(sections) == 1 and sections[0].skipped is None
    assert (tmp_path / sections[0].files[0]).exists()
    return sections[0].findings


def test_known_verdicts_are_stated_with_their_tallies(tmp_path: Path) -> None:
    # rel MSE x FLOPs: sub-batch 4 x 0.25 = 1; sparse 1 x 0.51 = 0.51 (beats: [0.46, 0.56] vs
    # [0.9, 1.1]); cv 1.8 x 0.58 = 1.04 (overlaps); fg 5 x 1 vs backprop 0 (loses).
    res = _results(tmp_path, {SUB: 4.0, BP: 0.0, SPARSE: 1.0, CV: 1.8, FG: 5.0})
    findings = _findings(res, tmp_path)
    text = {f.split(" vs ")[0].split(", ")[1]: f for f in findings}
    assert "beats at 3 of 3 checkpoints" in text["sparse-vjp"]
    assert "not distinguishable at 3 of 3" in text["cv-predicted"]
    assert "loses at 3 of 3" in text["fg-weight"] and "vs backprop " in text["fg-weight"]
    assert all("one seed: not a finding" in f for f in findings)
    assert not any("no sparse-vjp setting beats" in f for f in findings)


def test_a_losing_sparse_vjp_is_said_plainly(tmp_path: Path) -> None:
    res = _results(tmp_path, {SUB: 1.0, BP: 0.0, SPARSE: 4.0})
    findings = _findings(res, tmp_path)
    assert any("no sparse-vjp setting beats backprop-subbatch" in f for f in findings)


@pytest.mark.parametrize(("sparse_mse", "judged"), [(0.5, "faster in every seed"),
                                                    (4.0, "the seeds' ranges overlap"),
                                                    (16.0, "slower in every seed")])  # fmt: skip
def test_time_to_target_is_judged_only_over_disjoint_seed_ranges(
    tmp_path: Path, sparse_mse: float, judged: str
) -> None:
    # Seconds to target = 10 x (1 + seed) x rel_mse (`_results`): over two seeds the sub-batch
    # takes [40, 80] s and sparse-vjp [5, 10], [40, 80] or [160, 320] s.
    res = _results(tmp_path, {SUB: 4.0, BP: 0.0, SPARSE: sparse_mse}, seeds=2)
    sparse = next(f for f in _findings(res, tmp_path) if "sparse-vjp vs" in f)
    assert f"(2/2 seeds reached), {judged}." in sparse


def test_the_memory_figure_names_the_front_and_what_is_lighter_than_checkpointing(
    tmp_path: Path,
) -> None:
    res = _results(tmp_path, {SUB: 4.0, BP: 0.0, CK: 0.0, SPSA: 9.0})
    cost = res.frames["cost.csv"].set_index(["estimator"])
    cost.loc["backprop-checkpoint", ["time_ratio", "memory_ratio"]] = (1.4, 0.6)
    cost.loc["backprop-subbatch", ["time_ratio", "memory_ratio"]] = (0.5, 0.3)
    cost.loc["spsa", ["time_ratio", "memory_ratio"]] = (1.1, 0.2)
    cost["time_ratio_lo"], cost["time_ratio_hi"] = (
        cost["time_ratio"] * 0.95,
        cost["time_ratio"] * 1.05,
    )
    res.frames["cost.csv"] = cost.reset_index()
    sections = memory_time.build(res, style_of(res), tmp_path)
    findings = sections[0].findings
    assert (
        "backprop-subbatch (0.5× time, 0.3× memory); spsa (1.1× time, 0.2× memory)" in findings[0]
    )
    assert "uses 0.6× backprop's peak memory at 1.4× its time" in findings[1]
    assert findings[1].endswith("lighter than it: backprop-subbatch, spsa.")
    assert (tmp_path / "figures" / "memory-vs-time.png").exists()
