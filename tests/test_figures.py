"""Figures and sentences a reader can read, and terminal lines within 100 columns.

Each figure kind is drawn from small hand-made tables, degenerate ones included (one estimator,
nothing reaching the target, a run of one step, a run cut short by its cap), and its size in
pixels and its axis limits are checked; each sentence check is run on a case where it must
change the wording.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from measurements.schema import COLUMNS
from reports import curves, layers, profile
from reports.break_even import break_even_findings
from reports.closing import closing_table
from reports.load import Results
from reports.phrases import cheapest, other_word, versus_backprop
from reports.quality import over_seeds
from reports.style import DPI, MSE_RANGE, Style, interval, log_floor
from reports.tables import build as build_tables
from runners.cells import Cell
from runners.listing import listing
from runners.progress import Progress
from tasks.labels import short_labels
from tests.test_progress import _context

TASK = "t"
WIDTH = 100
CV = ("cv-predicted", "fraction=0.75,buffer=8,refit_every=1,ridge=1,beta=1,fit_beta=false")


def _pixels(fig: Figure) -> tuple[float, float]:
    w, h = fig.get_size_inches()
    return w * DPI, h * DPI


def _train(setting: tuple[str, str], curve: list[tuple[int, float, float]], seeds: int = 2,
           task: str = TASK) -> list[dict]:  # fmt: skip
    """Eval rows of `setting`: (step, seconds, accuracy) per eval, the same on every seed but
    for 0.01 of accuracy per seed; the last row `completed`."""
    est, params = setting
    return [
        {"task": task, "estimator": est, "params": params, "seed": seed, "lr": 0.01,
         "step": step, "seconds": seconds, "flops": 100.0 * step, "train_loss": 1.0,
         "val_acc": min(acc + 0.01 * seed, 1.0),
         "status": "completed" if i == len(curve) - 1 else "ok", "cell": f"train/{est}/{seed}"}
        for seed in range(seeds)
        for i, (step, seconds, acc) in enumerate(curve)
    ]  # fmt: skip


def _results(frames: dict[str, list[dict]], steps: int = 100, cap: float | None = 15.0,
             tasks: tuple[str, ...] = (TASK,)) -> Results:  # fmt: skip
    info = {"target_acc": 0.9, "steps": steps, "seconds": cap}
    manifest = {"config": {"tasks": list(tasks)}, "tasks": dict.fromkeys(tasks, info)}
    data = {f: pd.DataFrame(rows, columns=list(COLUMNS[f])) for f, rows in frames.items()}
    return Results(Path("."), manifest, data)


def _style(res: Results) -> Style:
    keys = [
        k for df in res.frames.values() for k in zip(df["estimator"], df["params"], strict=True)
    ]
    return Style.of(keys)


BACKPROP = ("backprop", "-")
LEARNS = [(0, 0.0, 0.1), (50, 2.0, 0.8), (100, 4.0, 0.95)]


def test_accuracy_axis_ends_at_the_cap_and_the_truncation_is_stated() -> None:
    """One run's single step took 77 s under a 15 s cap: the axis stops at the cap (2% margin),
    and the run is named as cut short at step 1 of its 100-step budget."""
    slow = ("fg-wperp", "k=10")
    res = _results({"train.csv": _train(BACKPROP, LEARNS) +
                    _train(slow, [(0, 0.0, 0.1), (1, 77.0, 0.3)])})  # fmt: skip
    fig, findings = curves.figure(res.frame("train.csv"), res, _style(res))
    (ax,) = fig.axes
    assert ax.get_xlim() == pytest.approx((0.0, 15.0 * 1.02))
    assert ax.get_ylim()[0] >= -0.01 and ax.get_ylim()[1] <= 1.01
    assert _pixels(fig) == pytest.approx((4.6 * DPI, 4.4 * DPI))
    short = [f for f in findings if "cut short" in f]
    assert short == [f"On {TASK}, cut short by the 15 s wall-clock cap before the 100-step budget "
                     "(median last step over the seeds cut short; x marks the end): "
                     "fg-wperp (step 1 of 100)."]  # fmt: skip


def test_flat_curves_are_summarised_in_one_line_not_drawn() -> None:
    """Three settings that stay at 0.1 (chance) are listed once and not drawn; backprop is
    drawn. Nothing reaches... backprop does; the axis ends at the longest drawn curve (4 s)."""
    flats = [(f"fg-{i}", "-") for i in range(3)]
    rows = _train(BACKPROP, LEARNS)
    for f in flats:
        rows += _train(f, [(0, 0.0, 0.1), (100, 9.0, 0.11)])
    res = _results({"train.csv": rows}, cap=None)
    fig, findings = curves.figure(res.frame("train.csv"), res, _style(res))
    (ax,) = fig.axes
    drawn = {line.get_label() for line in ax.get_lines()}
    assert "backprop" in drawn and not drawn & {"fg-0", "fg-1", "fg-2"}
    assert ax.get_xlim()[1] == pytest.approx(4.0 * 1.02)
    line = [f for f in findings if "not drawn" in f]
    assert len(line) == 1 and "3 settings" in line[0] and "fg-2 (0.105 to 0.115)" in line[0]
    assert "3 flat settings not drawn" in ax.get_title()


def test_degenerate_curves_one_estimator_one_step_nothing_reaching() -> None:
    """One setting, one seed, one eval at step 0 and 0 s: a figure with no band, no crash, no
    singular axis; its accuracy interval is absent (one seed) and no cut-short line (no budget
    of steps recorded)."""
    res = _results({"train.csv": _train(BACKPROP, [(0, 0.0, 0.1)], seeds=1)}, steps=None)
    fig, findings = curves.figure(res.frame("train.csv"), res, _style(res))
    (ax,) = fig.axes
    assert not ax.collections and all(math.isfinite(v) for v in ax.get_xlim())
    assert findings == [f"On {TASK}, the highest mean final validation accuracy is backprop's: "
                        "0.1 (1 seed) after a mean 0 s of training."]  # fmt: skip


def test_accuracy_interval_is_clipped_to_one() -> None:
    """Final accuracies 1.0, 1.0 and 0.9: mean 0.967, sd 0.0577, t(0.975, 2) = 4.303, half-width
    0.143: [0.823, 1.11], shown clipped to 1."""
    rows = _train(BACKPROP, [(0, 0.0, 0.1), (10, 1.0, 1.0)], seeds=2)
    rows += [dict(rows[0], seed=2), dict(rows[-1], seed=2, val_acc=0.9)]
    res = _results({"train.csv": rows})
    _, findings = curves.figure(res.frame("train.csv"), res, _style(res))
    assert "0.967 [0.823, 1] (95% t-interval over 3 seeds" in findings[0]


def _quality(layers_n: int, checkpoints: tuple[int, ...]) -> pd.DataFrame:
    rows = []
    names = [f"block.{i}" for i in range(layers_n)] + ["total"]
    for est, params, bias in (("backprop", "-", 1e-13), ("sparse-vjp", "keep=0.5", 0.5)):
        for checkpoint in checkpoints:
            for seed in range(2):
                for layer in names:
                    rows.append({"task": TASK, "estimator": est, "params": params, "seed": seed,
                                 "checkpoint": checkpoint, "layer": layer, "cosine": 0.9,
                                 "cosine_lo": 0.85, "cosine_hi": 0.95, "rel_bias": bias,
                                 "rel_bias_se": 0.01, "rel_variance": 2.0 * bias,
                                 "rel_mse": 1.0, "rel_mse_lo": -0.2, "rel_mse_hi": 2.0,
                                 "work_mse": 1.0, "work_mse_lo": 0.5, "work_mse_hi": 1.5,
                                 "work_scale": 1.0, "bias_p": 0.5})  # fmt: skip
    return over_seeds(pd.DataFrame(rows), ["task", "estimator", "params", "checkpoint", "layer"])


def test_per_layer_figure_grows_down_not_across_and_floors_its_log_axes() -> None:
    """27 layers and 3 checkpoints: 3 panels across (1518 px at 110 dpi, whatever the number of
    layers), no line joining layers, and the log axes start 8 decades below 0.5 (the 1e-13
    float noise of backprop drawn at that floor, not setting the limit)."""
    q = _quality(27, (0, 50, 100))
    fig = layers.figure(q, Style.of([BACKPROP, ("sparse-vjp", "keep=0.5")]), TASK)
    width, height = _pixels(fig)
    assert width == pytest.approx(3 * 4.6 * DPI) and height < 3 * 7 * DPI
    axes = fig.axes
    assert len(axes) == 9
    for ax in axes:
        points = [line for line in ax.get_lines() if line.get_marker() != "None"]
        assert points and all(line.get_linestyle() == "None" for line in points)
        assert ax.get_ylim() == pytest.approx((27.5, -0.5))
    bias = axes[1]
    assert bias.get_xscale() == "log"
    assert bias.get_xlim()[0] == pytest.approx(0.5e-8 / 1.5)
    assert log_floor([1e-13, 0.5, 0.2]) == pytest.approx(0.5e-8)
    assert log_floor([0.0, -1.0]) is None


def test_profile_draws_only_settings_that_reach_a_target_and_says_so() -> None:
    """9 settings on 2 tasks, 7 never reaching the target: 2 lines, one finding for the 7."""
    labels = [f"s{i}" for i in range(9)]
    r = pd.DataFrame([[1.0, 1.5, *[math.inf] * 7], [2.0, 1.0, *[math.inf] * 7]],
                     index=["a", "b"], columns=labels)  # fmt: skip
    fig, findings = profile.figure(r, Style.of((label, "-") for label in labels))
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["s0", "s1"]
    assert ax.get_ylim() == pytest.approx((-0.02, 1.02)) and ax.get_xlim()[0] == 1.0
    assert findings[-1].startswith("7 of 9 settings reach the target on none of the 2 tasks")
    assert _pixels(fig) == pytest.approx((7.5 * DPI, 4.0 * DPI))


def test_ratio_sentences_say_slowdown_and_cheapest_only_when_true() -> None:
    assert versus_backprop(4.0, "time") == "speedup over backprop 4× in time"
    slow = versus_backprop(0.572, "time")
    assert "speedup" not in slow and slow.startswith("slower than backprop in time: 1.75×")
    assert versus_backprop(1.0004, "FLOPs") == "the same FLOPs as backprop"
    assert "no time comparison" in versus_backprop(math.inf, "time")
    assert cheapest("svd", 1.0, 3).startswith("No setting has a step costing less FLOPs")
    assert cheapest("svd", 0.5, 3) == "Cheapest step in FLOPs: svd at 0.5× backprop's"
    assert (
        cheapest("svd", 0.5, 1) == "The only setting, svd, has a step costing 0.5× backprop's FLOPs"
    )
    assert (other_word(True), other_word(False)) == ("other ", "")


def test_intervals_are_clipped_to_the_quantitys_range() -> None:
    assert interval(5.0, -7.08, 61.2, MSE_RANGE) == "5 [0, 61.2]"
    assert interval(5.0, -7.08, 61.2) == "5 [-7.08, 61.2]"
    assert interval(5.0, math.nan, 6.0, MSE_RANGE) == "5 [-, 6]"


@pytest.mark.parametrize(
    ("first", "backprop_line"),
    [(("spsa", "-"), None), (("backprop", "-"), "Backprop does not reach the target accuracy 0.9")],
)
def test_nothing_reaching_says_no_setting_never_other_than_backprop(
    tmp_path: Path, first: tuple[str, str], backprop_line: str | None
) -> None:
    """Two settings, neither reaching 0.9: "No setting reaches", never "no setting other than
    backprop", whether backprop was run (and did not reach it either) or not run at all."""
    rows = _train(first, [(0, 0.0, 0.1), (100, 1.0, 0.7)])
    rows += _train(("fg-wt", "-"), [(0, 0.0, 0.1), (100, 3.0, 0.6)])
    res = _results({"train.csv": rows})
    (section,) = build_tables(res, _style(res), tmp_path)
    text = " ".join(section.findings)
    assert "No setting reaches the target 0.9" in text and "other than backprop" not in text
    if backprop_line is None:
        assert "backprop" not in text.replace("backprop's", "")
    else:
        assert backprop_line in text


def _diagnostics(alignments: list[list[float]], even: float) -> pd.DataFrame:
    est, params = CV
    return pd.DataFrame([
        {"task": TASK, "estimator": est, "params": params, "seed": seed, "lr": 0.01,
         "step": 10 * i, "name": name, "value": value, "cell": "c"}
        for seed, values in enumerate(alignments) for i, a in enumerate(values)
        for name, value in (("alignment", a), ("break_even", even))
    ])  # fmt: skip


def test_break_even_is_stated_with_the_alignments_interval() -> None:
    """Seeds' mean alignments 0.3, 0.35, 0.4: mean 0.35, sd 0.05, half-width 4.303 × 0.05 /
    sqrt(3) = 0.124 -> [0.226, 0.474], below the break-even 0.816; at 0.9, 0.95, 1.0 above;
    at 0.7, 0.8, 0.9 the interval [0.552, 1.05] (clipped to 1) contains 0.816."""
    style = Style.of([CV])
    below = break_even_findings(_diagnostics([[0.2, 0.4], [0.35], [0.4]], 0.816), TASK, style)
    assert below == [
        "cv-predicted's alignment (cosine of predicted and true control gradient, "
        "diagnostics.csv; mean over 3 seeds of each seed's mean over its logged steps, 95% "
        "t-interval over seeds) is 0.35 [0.226, 0.474], below its break-even alignment: no gain "
        "over backprop is expected from it (0.816)."
    ]
    above = break_even_findings(_diagnostics([[0.9], [0.95], [1.0]], 0.816), TASK, style)
    assert "above its break-even alignment" in above[0]
    tied = break_even_findings(_diagnostics([[0.7], [0.8], [0.9]], 0.816), TASK, style)
    assert "0.8 [0.552, 1]" in tied[0] and "not distinguishable" in tied[0]
    assert break_even_findings(None, TASK, style) == []


def test_listing_progress_and_closing_lines_fit_100_columns() -> None:
    """`--list`, the progress bar while a long-named cell runs, and the closing table of two
    tasks with long parameter strings: every line at most 100 columns, short labels used."""
    assert max(len(line) for line in listing().splitlines()) <= WIDTH
    half = f"{CV[0]}:{CV[1].replace('0.75', '0.5')}"
    cells = [Cell("vit-digits", f"{CV[0]}:{CV[1]}", 0, "train"),
             Cell("bagnet-digits", half, 0, "quality")]  # fmt: skip
    with Progress(cells, _context(seconds=15.0), file=io.StringIO()) as progress:
        for cell in cells:
            progress.start(cell)
            line = str(progress.bar)
            assert len(line) <= WIDTH and "buffer" not in line, line
            assert line.startswith(f"{cell.measure} {cell.task} cv-predicted:fr")
            progress.finish(cell, 1.0)
    other = (CV[0], CV[1].replace("0.75", "0.5"))
    rows = [*_train(CV, LEARNS), *_train(other, LEARNS), *_train(CV, LEARNS, task="u")]
    text = closing_table(_results({"train.csv": rows}, tasks=(TASK, "u")))
    assert max(len(line) for line in text.splitlines()) <= WIDTH
    assert "cv-predicted:fraction=0.75 " in text and "buffer" not in text


def test_short_labels_show_only_the_options_that_differ() -> None:
    labels = short_labels([CV, (CV[0], CV[1].replace("0.75", "0.5")), BACKPROP])
    assert list(labels.values()) == ["cv-predicted:fraction=0.75", "cv-predicted:fraction=0.5",
                                     "backprop"]  # fmt: skip
