"""The Claims section from small hand-made results whose verdicts are known
(`tests/claim_results.py` says which claim holds where, and why), and the verdict rules.

Expected intervals are worked out by hand in the comments: a mean over 3 seeds has the 95%
Student-t half-width t_{0.975,2} sd / sqrt(3), t_{0.975,2} = 4.303.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from reports import build_reports
from reports.build import BUILDERS
from reports.claim_sparse import holm, ratio_to_backprop
from reports.claims import CLAIMS, build, verdicts
from reports.load import load_results
from reports.style import Style
from reports.verdict import (
    Check,
    Claim,
    Estimate,
    accuracy_difference,
    all_of,
    any_of,
    beats,
    mean_interval,
    verdict,
    within,
)
from tests.claim_results import TASKS, manifest, run, write, write_results

PRESET = "python -m runners.sweep --preset claims"
Sentences = dict[str, tuple[str, str]]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_results(tmp_path_factory.mktemp("claims"))


def _sentences(folder: Path) -> Sentences:
    """Claim name -> (verdict word, sentence)."""
    return {v.sentence.split(".")[0]: (v.word, v.sentence) for v in verdicts(load_results(folder))}


@pytest.fixture(scope="module")
def sentences(results: Path) -> Sentences:
    return _sentences(results)


def test_claim_1a_holds_with_the_paired_difference_and_its_t_interval(
    sentences: Sentences,
) -> None:
    word, text = sentences["Claim 1a"]
    # differences 0.1, 0.105, 0.11: mean 0.105, sd 0.005 -> half 0.0124; the ratio_every=5 run
    # (accuracy 0 at every eval) is left out, or seed 0's difference would be 0 - 0.8
    assert word == "holds"
    assert "vit-digits: accuracy difference 0.105 [0.0926, 0.117] (3 seeds) (for)" in text
    assert "mlp-mnist1d" not in text  # the claim is on a ViT
    assert "Verdict: holds." in text and "2511.05187" in text


def test_accuracy_differences_count_the_validation_sets_sampling_error() -> None:
    """One example of 89 better in every seed: the seeds alone give a zero-width interval, the
    validation set's fewest-discordant McNemar error 1.96 sqrt((d - d²) / 89) = 0.0219 does not
    decide; a clear gain on 1000 examples still does (seeds 0.0124, sampling 0.019)."""
    one = 1 / 89
    alone = accuracy_difference([one] * 3, None)
    assert alone.lo == pytest.approx(one) and alone.hi == pytest.approx(one)
    counted = accuracy_difference([one] * 3, 89)
    assert counted.text() == "0.0112 [-0.0107, 0.0331] (3 seeds, 89 validation examples)"
    clear = accuracy_difference([0.1, 0.105, 0.11], 1000)
    assert clear.text() == "0.105 [0.0823, 0.128] (3 seeds, 1000 validation examples)"
    assert accuracy_difference([0.0, 0.0], 50).hi == 0.0  # no difference, no discordance needed


def test_claim_1a_widens_with_the_validation_set_the_manifest_records(
    results: Path, tmp_path: Path
) -> None:
    for file in results.iterdir():
        if file.is_file():
            (tmp_path / file.name).write_bytes(file.read_bytes())
    manifest(tmp_path, TASKS, n_val=100)
    word, text = _sentences(tmp_path)["Claim 1a"]
    # seeds' half 0.0124 and 1.96 sqrt((0.105 - 0.105²) / 100) = 0.0601: hypot 0.0614
    assert "vit-digits: accuracy difference 0.105 [0.0436, 0.166] (3 seeds, 100 validation " in text
    assert word == "holds"


def test_claim_1b_holds_below_break_even_with_no_gain(sentences: Sentences) -> None:
    word, text = sentences["Claim 1b"]
    # alignment 0.3, 0.31, 0.32 (the ratio run's 0.99 left out): half 4.303 * 0.01 / sqrt(3) =
    # 0.0248; gain -0.21 [-0.235, -0.185]
    assert word == "holds"
    assert "alignment 0.31 [0.285, 0.335] (3 seeds) below break-even 0.8" in text
    assert "accuracy difference -0.21 [-0.235, -0.185] (3 seeds) (for)" in text


def test_claim_1c_compares_the_ratio_with_the_closed_form_at_each_steps_rho_and_beta(
    sentences: Sentences,
) -> None:
    word, text = sentences["Claim 1c"]
    assert word == "holds only on vit-digits (study), mlp-mnist1d:width=128"
    # study: logs of 0.95, 1, 1.05: mean -0.000834, exp of its t-interval [0.882, 1.13] inside
    # [0.8, 1.25]; bagnet-digits' 2, 2.1, 1.9: [1.76, 2.26] wholly above 1.25
    assert (
        "vit-digits (study): measured over closed-form variance 0.999 [0.882, 1.13] (3 "
        "predictors), alignments 0.3 to 0.9, 200 draws each (for)" in text
    )
    assert (
        "bagnet-digits (study): measured over closed-form variance 2 [1.76, 2.26] (3 predictors), "
        "alignments 0.3 to 0.9, 200 draws each (against)" in text
    )
    assert "within [0.8, 1.25]" in text
    # gaps 0.01, 0.02, 0.03: 0.02 ± 0.0248; closed forms 0.64 (beta 1) and 0.73 (beta 0.5) at
    # rho 0.6, mean 0.685; step 7 (no ratio logged, beta 0) is not read
    assert (
        "mlp-mnist1d:width=128: measured minus closed-form variance ratio 0.02 [-0.00484, 0.0448] "
        "(3 seeds) (means: measured 0.705, closed form 0.685 at rho 0.6, beta 0.75; 2 steps a "
        "seed) (for)" in text
    )
    assert "variance ratio 0.31 [0.285, 0.335] (3 seeds)" in text  # wholly above 0.1
    assert "On mlp-mnist1d the 95% interval does not decide" in text  # 0.1 [-0.148, 0.348]
    assert "within ±0.1" in text and "not the per-example correlation" in text


def test_claim_2_holds_at_both_widths_and_the_gap_grows(sentences: Sentences) -> None:
    word, text = sentences["Claim 2a"]
    assert word == "holds"
    # paired by seed: 0.58, 0.6, 0.62 minus 0.3: 0.3 ± 4.303 x 0.02 / sqrt(3) = 0.0497
    assert (
        "mlp-mnist1d:width=128: fg-wperp minus fg-wt 0.3 [0.25, 0.35] (3 seeds), minus "
        "fg-activity 0.5 [0.45, 0.55] (3 seeds) (mean cosines 0.6, 0.3, 0.1) (for)" in text
    )
    assert "width=512: fg-wperp minus fg-wt 0.6 [0.501, 0.699] (3 seeds)" in text  # sd 0.04
    word, text = sentences["Claim 2b"]
    assert word == "holds"
    # gaps over fg-wt 0.28, 0.3, 0.32 and 0.56, 0.6, 0.64 two doublings apart: slopes 0.14,
    # 0.15, 0.16 per doubling, 0.15 ± 4.303 x 0.01 / sqrt(3) = 0.0248
    assert (
        "mlp-mnist1d: gap 0.3 over fg-wt at width 128, 0.6 over fg-wt at width 512; slope per "
        "doubling 0.15 [0.125, 0.175] (3 seeds) (for)" in text
    )


def test_claim_2c_reads_the_overlap_at_k_10_at_the_papers_widths(sentences: Sentences) -> None:
    word, text = sentences["Claim 2c"]
    assert word == "holds only on mlp-mnist1d width 128, hidden.0"
    assert (
        "mlp-mnist1d width 128, hidden.0: overlap at k = 10 0.8 [0.75, 0.85] (256 examples) "
        "after 300 backprop steps (for)" in text
    )
    assert "width 512, hidden.0: overlap at k = 10 0.3 [0.25, 0.35] (256 examples)" in text
    assert "On mlp-mnist1d width 512, hidden.1 the 95% interval does not decide" in text
    assert "width 64" not in text and "0.75 [" not in text  # width 64 and k = 9 are not read


def test_claim_2d_needs_the_cosine_kept_and_a_lower_time_ratio(sentences: Sentences) -> None:
    word, text = sentences["Claim 2d"]
    assert word == "holds only on mlp-mnist1d:width=128"
    # per seed 0.85 - 0.9 x (0.58, 0.6, 0.62) = 0.328, 0.31, 0.292: 0.31 ± 4.303 x 0.018 / sqrt(3)
    assert (
        "mlp-mnist1d:width=128: cosine fg-wperp-ns 0.85 [0.8, 0.9] (3 seeds), fg-wperp 0.6 "
        "[0.53, 0.67] (3 seeds), ns minus 0.9 × fg-wperp 0.31 [0.265, 0.355] (3 seeds) (cosine: "
        "for); time ratio fg-wperp-ns 5 [4.5, 5.5] (cost cell), fg-wperp 20 [18, 22] (cost cell) "
        "(time: for) (for)" in text
    )
    # 0.5 - 0.9 x (0.86, 0.9, 0.94): against, whatever the (noisy, undecided) time says
    assert "-0.31 [-0.399, -0.221] (3 seeds) (cosine: against)" in text
    assert "(noisy) (time: undecided) (against)" in text


def test_claim_3a_does_not_hold_when_the_bias_test_rejects(sentences: Sentences) -> None:
    word, text = sentences["Claim 3a"]
    assert word == "does not hold"
    # Fisher: X = -6 ln 0.001 = 41.4 on chi^2(6): p = e^{-x}(1 + x + x^2/2) at x = X/2, 2.36e-07
    assert "sketch=uniform, keep=0.25: rel. bias 0.2 ± 0.01, p 2.36e-07 (against)" in text
    assert "Verdict: does not hold." in text


def test_claim_3c_holds_when_one_keep_reaches_the_target_sooner(sentences: Sentences) -> None:
    word, text = sentences["Claim 3c"]
    assert word == "holds"
    # keep=0.25: ratios 0.5, 0.5, 0.4; logs mean -0.7675, sd 0.1288, half 0.3200:
    # exp -> 0.464 [0.337, 0.639]. keep=0.5 never reaches: its bounds 5/4, 5/4, 5/5 shown
    assert (
        "bagnet-digits: best keep=0.25: seconds-to-target ratio 0.464 [0.337, 0.639] (3 seeds) "
        "(reached 3/3, backprop 3/3; for); keep=0.5: seconds-to-target ratio 1.16 [0.843, 1.6] "
        "(3 seeds) (reached 0/3, backprop 3/3; against) (for)" in text
    )


def _times(seconds: list[float], reached: list[bool]) -> pd.DataFrame:
    """`claim_sparse.times` rows of one setting: per seed the bound and whether it is reached."""
    return pd.DataFrame({"seed": range(len(seconds)), "bound": seconds, "reached": reached})


@pytest.mark.parametrize(
    ("mine", "base", "passed"),
    [
        (([1.0, 1.1, 1.2], [True] * 3), ([2.0] * 3, [True] * 3), True),
        (([1.0, 1.1, 1.2], [True, True, False]), ([2.0] * 3, [True] * 3), None),  # a lower bound
        (([1.0, 1.1, 1.2], [True] * 3), ([2.0] * 3, [True, True, False]), True),  # upper bound
        (([4.0, 4.1, 4.2], [True] * 3), ([2.0] * 3, [True] * 3), False),
        (([4.0, 4.1, 4.2], [True] * 3), ([2.0] * 3, [True, True, False]), None),  # upper bound
        (([4.0, 4.1, 4.2], [False] * 3), ([2.0] * 3, [True] * 3), False),  # never reaches
        (([1.0, 1.1, 1.2], [False] * 3), ([2.0] * 3, [True] * 3), False),  # never, in 1.2 s
        (([1.0, 1.1, 1.2], [False] * 3), ([2.0] * 3, [False] * 3), None),  # neither reaches
    ],
)
def test_claim_3c_censored_runs_decide_only_where_their_bound_is_on_the_safe_side(
    mine: tuple[list[float], list[bool]], base: tuple[list[float], list[bool]], passed: bool | None
) -> None:
    assert ratio_to_backprop(_times(*mine), _times(*base))[1] is passed


def test_claim_4a_reads_train_csv_and_the_blogs_own_setting(sentences: Sentences) -> None:
    word, text = sentences["Claim 4a"]
    assert word == "holds only on blog setting: mlp-diabetes"
    assert "mlp-breast-cancer: accuracy difference -0.11 [-0.135, -0.0852] (3 seeds)" in text
    assert "blog setting: mlp-breast-cancer: accuracy difference -0.11 [-0.135, -0.0852]" in text
    assert (
        "blog setting: mlp-diabetes: accuracy difference 0.01 [-0.0148, 0.0348] (3 seeds) (for)"
        in text
    )


def test_claim_4b_reads_the_blogs_own_setting_without_cost_rows(sentences: Sentences) -> None:
    word, text = sentences["Claim 4b"]
    assert word == "holds only on blog setting: mlp-breast-cancer"
    # -0.4, -0.41, -0.42: -0.41 ± 0.0248, wholly below -0.3; diabetes -0.2 at every seed
    assert (
        "blog setting: mlp-breast-cancer: step time change -0.41 [-0.435, -0.385] (3 seeds) "
        "(blog -0.4) (for)" in text
    )
    assert "blog setting: mlp-diabetes: step time change -0.2 [-0.2, -0.2] (3 seeds)" in text


def test_claim_4c_does_not_hold_below_70_percent_fewer_flops(sentences: Sentences) -> None:
    word, text = sentences["Claim 4c"]
    assert word == "does not hold"
    assert "mlp-breast-cancer: first-layer weight-gradient FLOP change -0.5 [-0.5, -0.5]" in text
    # -0.6, -0.61, -0.62: -0.61 ± 0.0248, wholly above -0.7
    assert (
        "mlp-diabetes: first-layer weight-gradient FLOP change -0.61 [-0.635, -0.585] (3 seeds) "
        "(blog -0.75) (against)" in text
    )


def test_claims_without_their_rows_are_not_measurable_and_name_the_command(
    sentences: Sentences, tmp_path: Path
) -> None:
    for name in ("Claim 3b",):
        word, text = sentences[name]
        assert word == "not measurable from these results"
        assert text.endswith(f"(run `{PRESET}`).")
    write(tmp_path, "train.csv", run("mlp-mnist1d", "backprop", "-", 0, [0.1, 0.5]))
    manifest(tmp_path, ["mlp-mnist1d"])
    bare = _sentences(tmp_path)
    why = {"Claim 1c": "neither the cv-predicted study's cv_predicted_variance.csv nor",
           "Claim 2c": "no wperp_overlap.csv rows at k = 10 and width 128 or 512",
           "Claim 2d": "no task has fg-wperp-ns and fg-wperp at the same k",
           "Claim 3c": "has backprop and sparse-vjp runs on common seeds",
           "Claim 4c": "the results hold no blog.csv"}  # fmt: skip
    for name, reason in why.items():
        word, text = bare[name]
        assert word == "not measurable from these results", name
        assert reason in text and text.endswith(f"(run `{PRESET}`)."), name


def test_verdict_words_over_mixed_checks() -> None:
    claim = Claim("C", "src", "It works", "a test", PRESET)
    mixed = verdict(claim, [Check("a", True, "x"), Check("b", False, "y")])
    assert mixed.word == "holds only on a"
    partly = verdict(claim, [Check("a", True, "x"), Check("b", None, "y")])
    assert partly.word == "holds only on a"  # an undecided task does not count for the claim
    assert "On b the 95% interval does not decide" in partly.sentence
    undecided = verdict(claim, [Check("a", None, "x")])
    assert undecided.word == "not measurable from these results"
    assert "no 95% interval decides it" in undecided.sentence
    assert f"`{PRESET}` with a larger `--seeds`" in undecided.sentence


def test_intervals_decide_only_when_apart() -> None:
    one = mean_interval([0.5])
    assert math.isnan(one.lo) and one.basis == "1 seed"
    assert beats(Estimate(1, 0.9, 1.1, "s"), Estimate(0.5, 0.4, 0.6, "s")) is True
    assert beats(Estimate(1, 0.5, 1.5, "s"), Estimate(0.5, 0.4, 0.6, "s")) is None
    assert beats(one, Estimate(0.1, 0.0, 0.2, "s")) is None
    assert within(Estimate(0, -0.05, 0.05, "s"), 0.1) is True
    assert within(Estimate(0.2, 0.1, 0.3, "s"), 0.1) is False
    assert within(Estimate(-0.2, -0.3, -0.1, "s"), 0.1) is False
    assert within(Estimate(0.1, 0.05, 0.15, "s"), 0.1) is None
    assert within(one, 0.1) is None
    assert all_of([True, True]) is True and all_of([True, None]) is None
    assert all_of([None, False]) is False
    assert any_of([False, True]) is True and any_of([False, None]) is None
    assert any_of([False, False]) is False


def test_the_claims_section_heads_the_report(results: Path, tmp_path: Path) -> None:
    assert BUILDERS[0] is build
    index = build_reports(results, tmp_path / "report").read_text()
    assert "Claims" in index
    section = build(load_results(results), Style.of([]), tmp_path)[0]
    names = [c.name.removeprefix("Claim ") for c in CLAIMS]
    assert names == ["1a", "1b", "1c", "2a", "2b", "2c", "2d", "3a", "3b", "3c", "4a", "4b", "4c"]
    assert all(f"| {c.name} " in section.body for c in CLAIMS) and section.skipped is None


def test_holm_rejects_step_down_and_not_a_lone_p_near_alpha_among_many() -> None:
    """Claim 3a's family-wise correction: 0.01 <= 0.05 / 3 is rejected, then 0.03 > 0.05 / 2
    stops it; p 0.0466 among 12 settings (the smallest, against 0.05 / 12) is not rejected."""
    assert holm([0.04, 0.01, 0.03], 0.05) == {0.01}
    assert holm([0.001, 0.02, 0.5], 0.05) == {0.001, 0.02}
    assert holm([0.0466, *[0.5] * 11], 0.05) == set()
