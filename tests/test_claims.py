"""The Claims section from small hand-made results whose verdicts are known.

The tables are written as the sweep writes them and read back by `load_results`. Built so that
claim 1a holds (cv-predicted 0.105 above backprop at equal wall-clock, 3 seeds), 1b holds
(alignment below break-even and no gain), 2a and 2b hold (fg-wperp's cosine interval wholly above
the others', its gap wider at width 512), 3a does not hold (bias p 0.001 per seed), 3b is not
measurable (no minvar sketch), 4a does not hold (svd-subspace 0.1 below backprop) and 4b is not
measurable (no cost.csv).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from measurements.schema import COLUMNS
from reports import build_reports
from reports.build import BUILDERS
from reports.claims import build, verdicts
from reports.load import load_results
from reports.style import Style
from reports.verdict import Check, Claim, Estimate, beats, mean_interval, verdict

CV = "fraction=0.75,buffer=64"
WIDTHS = ("mlp-mnist1d:width=128", "mlp-mnist1d:width=512")
TASKS = ["vit-digits", "mlp-mnist1d", *WIDTHS, "mlp-breast-cancer"]
SEEDS = (0, 1, 2)


def _write(folder: Path, file: str, rows: list[dict]) -> None:
    pd.DataFrame(rows, columns=list(COLUMNS[file])).to_csv(folder / file, index=False,
                                                           na_rep="nan")  # fmt: skip


def _run(task: str, est: str, params: str, seed: int, accs: list[float]) -> list[dict]:
    """One training run: an eval each second with these validation accuracies."""
    return [{"task": task, "estimator": est, "params": params, "seed": seed, "lr": 0.01,
             "step": 10 * i, "seconds": float(i), "flops": 1e6 * i, "train_loss": 1.0,
             "val_acc": acc, "status": "ok", "cell": f"train/{task}/{est}/seed={seed}"}
            for i, acc in enumerate(accs)]  # fmt: skip


def _quality(task: str, est: str, params: str, cosine: float, bias_p: float) -> list[dict]:
    return [{"task": task, "estimator": est, "params": params, "seed": s, "checkpoint": 10,
             "layer": "total", "cosine": cosine, "cosine_lo": cosine - 0.05,
             "cosine_hi": cosine + 0.05, "rel_bias": 0.2, "rel_bias_se": 0.01, "bias_stat": 9.0,
             "bias_p": bias_p, "rel_variance": 1.0, "rel_mse": 1.0, "rel_mse_lo": 0.9,
             "rel_mse_hi": 1.1, "work_mse": 1.0, "work_mse_lo": 0.9, "work_mse_hi": 1.1,
             "work_scale": 1.0, "work_floor": 10.0, "draws": 8, "cell": "q"}
            for s in SEEDS]  # fmt: skip


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("claims")
    train = []
    for s in SEEDS:
        # vit-digits: at the shorter run's 3 s, cv 0.9 + 0.005 s against backprop 0.8
        train += _run("vit-digits", "backprop", "-", s, [0.1, 0.5, 0.7, 0.8])
        train += _run("vit-digits", "cv-predicted", CV, s, [0.1, 0.6, 0.8, 0.9 + 0.005 * s, 0.95])
        # mlp-mnist1d: cv 0.2 + 0.01 s below backprop at 2 s
        train += _run("mlp-mnist1d", "backprop", "-", s, [0.1, 0.4, 0.6])
        train += _run("mlp-mnist1d", "cv-predicted", CV, s, [0.1, 0.3, 0.4 - 0.01 * s])
        # breast cancer: svd-subspace ends 0.1 + 0.01 s below backprop
        train += _run("mlp-breast-cancer", "backprop", "-", s, [0.5, 0.95])
        train += _run("mlp-breast-cancer", "svd-subspace", "k=2", s, [0.5, 0.85 - 0.01 * s])
    _write(folder, "train.csv", train)
    diag = [{"task": "mlp-mnist1d", "estimator": "cv-predicted", "params": CV, "seed": s,
             "lr": 0.01, "step": step, "name": name, "value": value, "cell": "d"}
            for s in SEEDS for step in (10, 20)
            for name, value in (("alignment", 0.3 + 0.01 * s), ("break_even", 0.8))]  # fmt: skip
    _write(folder, "diagnostics.csv", diag)
    quality = []
    for task, wperp in zip(WIDTHS, (0.6, 0.9), strict=True):
        quality += _quality(task, "fg-wperp", "k=10", wperp, 0.5)
        quality += _quality(task, "fg-wt", "tangents=1", 0.3, 0.5)
        quality += _quality(task, "fg-activity", "tangents=1", 0.1, 0.5)
    quality += _quality("mlp-mnist1d", "sparse-vjp", "sketch=uniform,keep=0.25", 0.5, 0.001)
    _write(folder, "quality.csv", quality)
    manifest = {"config": {"tasks": TASKS}, "cells": {},
                "tasks": {t: {"target_acc": 0.9, "batch_size": 10} for t in TASKS}}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def sentences(results: Path) -> dict[str, tuple[str, str]]:
    """Claim name -> (verdict word, sentence)."""
    found = verdicts(load_results(results))
    return {v.sentence.split(".")[0]: (v.word, v.sentence) for v in found}


def test_claim_1a_holds_with_the_paired_difference_and_its_t_interval(
    sentences: dict[str, tuple[str, str]],
) -> None:
    word, text = sentences["Claim 1a"]
    # differences 0.1, 0.105, 0.11: mean 0.105, sd 0.005, t_{0.975,2} = 4.303 -> half 0.0124
    assert word == "holds"
    assert "vit-digits: accuracy difference 0.105 [0.0926, 0.117] (3 seeds) (for)" in text
    assert "mlp-mnist1d" not in text  # the claim is on a ViT
    assert "Verdict: holds." in text and "2511.05187" in text


def test_claim_1b_holds_below_break_even_with_no_gain(
    sentences: dict[str, tuple[str, str]],
) -> None:
    word, text = sentences["Claim 1b"]
    # alignment 0.3, 0.31, 0.32: half 4.303 * 0.01 / sqrt(3) = 0.0248; gain -0.21 [-0.235, -0.185]
    assert word == "holds"
    assert "alignment 0.31 [0.285, 0.335] (3 seeds) below break-even 0.8" in text
    assert "accuracy difference -0.21 [-0.235, -0.185] (3 seeds) (for)" in text


def test_claim_2_holds_at_both_widths_and_the_gap_grows(
    sentences: dict[str, tuple[str, str]],
) -> None:
    word, text = sentences["Claim 2a"]
    assert word == "holds"
    assert "cosine fg-wperp 0.9 [0.85, 0.95] (3 seeds), fg-wt 0.3 [0.25, 0.35] (3 seeds)" in text
    word, text = sentences["Claim 2b"]
    assert word == "holds"
    assert (
        "gap 0.3 [0.2, 0.4] (3 seeds) at width 128, 0.6 [0.5, 0.7] (3 seeds) at width 512" in text
    )


def test_claim_3a_does_not_hold_when_the_bias_test_rejects(
    sentences: dict[str, tuple[str, str]],
) -> None:
    word, text = sentences["Claim 3a"]
    assert word == "does not hold"
    # Fisher: X = -6 ln 0.001 = 41.4 on chi^2(6): p = e^{-x}(1 + x + x^2/2) at x = X/2, 2.36e-07
    assert "sketch=uniform, keep=0.25: rel. bias 0.2 ± 0.01, p 2.36e-07 (against)" in text
    assert "Verdict: does not hold." in text


def test_claims_without_their_rows_are_not_measurable_and_name_the_command(
    sentences: dict[str, tuple[str, str]],
) -> None:
    for name in ("Claim 3b", "Claim 4b"):
        word, text = sentences[name]
        assert word == "not measurable from these results"
        assert text.endswith("(run `python -m runners.sweep --preset claims`).")


def test_claim_4a_does_not_hold_when_accuracy_drops_by_more_than_003(
    sentences: dict[str, tuple[str, str]],
) -> None:
    word, text = sentences["Claim 4a"]
    assert word == "does not hold"
    assert "mlp-breast-cancer: accuracy difference -0.11 [-0.135, -0.0852] (3 seeds)" in text


def test_verdict_words_over_mixed_checks() -> None:
    claim = Claim("C", "src", "It works", "a test", "python -m runners.sweep --preset claims")
    mixed = verdict(claim, [Check("a", True, "x"), Check("b", False, "y")])
    assert mixed.word == "holds only on a"
    partly = verdict(claim, [Check("a", True, "x"), Check("b", None, "y")])
    assert partly.word == "holds only on a"  # an undecided task does not count for the claim
    assert "On b the 95% interval does not decide" in partly.sentence
    undecided = verdict(claim, [Check("a", None, "x")])
    assert undecided.word == "not measurable from these results"
    assert "no 95% interval decides it" in undecided.sentence
    assert "`python -m runners.sweep --preset claims` with a larger `--seeds`" in undecided.sentence


def test_intervals_decide_only_when_apart() -> None:
    one = mean_interval([0.5])
    assert math.isnan(one.lo) and one.basis == "1 seed"
    assert beats(Estimate(1, 0.9, 1.1, "s"), Estimate(0.5, 0.4, 0.6, "s")) is True
    assert beats(Estimate(1, 0.5, 1.5, "s"), Estimate(0.5, 0.4, 0.6, "s")) is None
    assert beats(one, Estimate(0.1, 0.0, 0.2, "s")) is None


def test_the_claims_section_heads_the_report(results: Path, tmp_path: Path) -> None:
    assert BUILDERS[0] is build
    index = build_reports(results, tmp_path / "report").read_text()
    assert "Claims" in index
    section = build(load_results(results), Style.of([]), tmp_path)[0]
    assert "| Claim 1a | " in section.body and section.skipped is None
