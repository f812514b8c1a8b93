"""`python -m reports`: tables, figures and index.md from a results folder the test writes.

The folders are synthetic, in the documented format (docs/protocol.md), with numbers chosen so
that the expected table entries can be worked out by hand (see the comments at each check).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from measurements.schema import ADDED_IN_2, BLOG_COLUMNS, COLUMNS
from reports import ReportError, build_reports
from reports.__main__ import main
from reports.closing import closing_table
from reports.load import load_results

ROOT = Path(__file__).resolve().parents[1]
NARROW, WIDE = "mlp-x:width=32", "mlp-x:width=64"
BACKPROP = ("backprop", "-")
KEEP_25 = ("sparse-vjp", "sketch=uniform,keep=0.25")
KEEP_50 = ("sparse-vjp", "sketch=uniform,keep=0.5")
SVD_K1 = ("svd-subspace", "k=1,threshold=0.5")
SVD_K4 = ("svd-subspace", "k=4,threshold=0.5")
SETTINGS = (BACKPROP, KEEP_25, KEEP_50, SVD_K1, SVD_K4)
STEPS = (0, 10, 20, 30)
TARGET = 0.8
# Per setting: (seconds per step, FLOPs per step, validation accuracy at STEPS for seeds 0, 1, 2).
CURVES = {
    BACKPROP: (0.1, 100, ([0.5, 0.7, 0.85, 0.9], [0.5, 0.82, 0.85, 0.9], [0.5, 0.6, 0.7, 0.75])),
    KEEP_25: (0.04, 40, ([0.5, 0.6, 0.81, 0.9],) * 3),
    KEEP_50: (0.05, 60, ([0.5, 0.81, 0.9, 0.9],) * 3),
    SVD_K1: (0.05, 50, ([0.5, 0.6, 0.65, 0.7],) * 3),
    SVD_K4: (0.09, 80, ([0.5, 0.7, 0.8, 0.85],) * 3),
}
COSINE = {BACKPROP: (1.0, 1.0), KEEP_25: (0.3, 0.5), KEEP_50: (0.5, 0.7), SVD_K1: (0.6, 0.6),
          SVD_K4: (0.9, 0.9)}  # fmt: skip
FLOP_RATIO = {BACKPROP: 1.0, KEEP_25: 0.55, KEEP_50: 0.7, SVD_K1: 0.6, SVD_K4: 0.85}
# Per setting: (rel_bias, its se, each seed's bias p), (work_mse, lo, hi, c*).
BIAS = {KEEP_25: (0.2, 0.05, 0.001), KEEP_50: (0.2, 0.3, 0.5), SVD_K1: (0.1, 0.1, 0.3),
        SVD_K4: (0.05, 0.02, 0.2)}  # fmt: skip
WORK = {KEEP_25: (1.65, 1.2, 2.1, 0.5), KEEP_50: (0.9, 0.5, 1.3, 0.01),
        SVD_K1: (0.3, 0.2, 0.4, 0.8), SVD_K4: (2.55, 2.0, 3.1, 1.0)}  # fmt: skip
# Per setting: (time ratio, lo, hi, A/A ratio, noisy, mean seconds per step). keep=0.25 is the
# cheapest in FLOPs and in time, but its cell is noisy: left out of those sentences.
COST = {BACKPROP: (1.0, 0.97, 1.03, 1.0, False, 0.02), KEEP_25: (0.5, 0.2, 1.4, 1.2, True, 0.005),
        KEEP_50: (0.8, 0.7, 0.9, 1.01, False, 0.015), SVD_K1: (0.9, 0.85, 1.05, 0.99, False, 0.012),
        SVD_K4: (1.5, 1.4, 1.6, 1.02, False, 0.03)}  # fmt: skip


def _write(folder: Path, file: str, rows: list[dict], columns: tuple[str, ...] = ()) -> None:
    """Rows as `measurements.store` writes them (NaN as "nan"), under `columns` (default: the
    file's protocol columns)."""
    frame = pd.DataFrame(rows, columns=list(columns or COLUMNS[file]))
    frame.to_csv(folder / file, index=False, na_rep="nan")


def _manifest(folder: Path, tasks: list[str], settings: tuple, failed: bool = False) -> None:
    cells = {f"train/{t}/{e}/seed=0": {"status": "done", "seconds": 1.0} for t in tasks
             for e, _ in settings}  # fmt: skip
    if failed:
        cells["cost/mlp-x:width=32/broken/step"] = {"status": "failed", "seconds": 0.1,
                                                    "error": "RuntimeError: kaboom"}  # fmt: skip
    manifest = {
        "config": {"preset": "test", "tasks": tasks, "estimators": [e for e, _ in settings],
                   "seeds": 3, "measure": ["quality", "cost", "train"], "draws": 8,
                   "tune": False, "steps": 30},
        "environment": {"device": "cpu", "torch": "test"},
        "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00",
        "cells": cells,
        "tasks": {t: {"n_params": 100, "target_acc": TARGET, "steps": 30, "batch_size": 10,
                      "lr": 0.01} for t in tasks},
        "chosen_lr": {},
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _train_rows(task: str, setting: tuple[str, str], slow: float) -> list[dict]:
    est, params = setting
    seconds, flops, curves = CURVES[setting]
    return [
        {"task": task, "estimator": est, "params": params, "seed": seed, "lr": 0.01,
         "step": step, "seconds": step * seconds * slow, "flops": step * flops,
         "train_loss": 1.0 - acc / 2, "val_acc": acc,
         "status": "completed" if step == STEPS[-1] else "ok", "cell": f"train/{task}/{seed}"}
        for seed, accs in enumerate(curves)
        for step, acc in zip(STEPS, accs, strict=True)
    ]  # fmt: skip


def _quality_rows(task: str, setting: tuple[str, str]) -> list[dict]:
    est, params = setting
    exact = setting == BACKPROP
    half = 0 if exact else 0.05 if setting == SVD_K4 else 0.1  # cosine interval half-width
    bias, se, p = BIAS.get(setting, (0.0, 0.0, float("nan")))
    work, work_lo, work_hi, scale = WORK.get(setting, (1.0, 1.0, 1.0, 1.0))
    rows = []
    for seed, cos in enumerate(COSINE[setting]):
        for checkpoint in (0, 15, 30):
            for layer in ("hidden.0", "head", "total"):
                rows.append({
                    "task": task, "estimator": est, "params": params, "seed": seed,
                    "checkpoint": checkpoint, "layer": layer, "cosine": cos,
                    "cosine_lo": cos - half, "cosine_hi": cos + half, "rel_bias": bias,
                    "rel_bias_se": se, "bias_stat": 1.0, "bias_p": p,
                    "rel_variance": 0.0 if exact else 2.0 - cos,
                    "rel_mse": 0.0 if exact else 2.5 - cos,
                    "rel_mse_lo": 0.0 if exact else 2.0 - cos,
                    "rel_mse_hi": 0.0 if exact else 3.0 - cos,
                    "work_mse": work, "work_mse_lo": work_lo, "work_mse_hi": work_hi,
                    "work_scale": scale, "draws": 8, "cell": f"quality/{task}/{seed}",
                })  # fmt: skip
    return rows


def _cost_rows(tasks: list[str]) -> list[dict]:
    rows = []
    for task in tasks:
        for setting in SETTINGS:
            ratio, lo, hi, aa, noisy, seconds = COST[setting]
            rows.append({
                "task": task, "estimator": setting[0], "params": setting[1], "device": "cpu",
                "flops": 1000, "elementwise": 50, "flop_ratio": FLOP_RATIO[setting],
                "elementwise_ratio": 2 * FLOP_RATIO[setting], "step_seconds": seconds,
                "step_seconds_median": seconds, "time_ratio": ratio, "time_ratio_lo": lo,
                "time_ratio_hi": hi, "aa_ratio": aa, "pairs": 15, "noisy": noisy,
                "prime_flops": 0, "prime_seconds": 0.0, "peak_bytes": 100, "memory_ratio": 1.1,
                "cell": "c",
            })  # fmt: skip
    return rows


def _diagnostic_rows(task: str, setting: tuple[str, str]) -> list[dict]:
    est, params = setting
    base = {"task": task, "estimator": est, "params": params, "lr": 0.01, "cell": "c"}
    rows = []
    for seed in range(3):
        for step, error in ((10, 0.3), (20, 0.6), (30, 0.4)):
            rows.append({**base, "seed": seed, "step": step, "name": "projection_error",
                         "value": error})  # fmt: skip
            rows.append({**base, "seed": seed, "step": step, "name": "refit",
                         "value": 1.0 if (seed, step) == (0, 20) else 0.0})  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two widths of one task (the wide one twice as slow), five settings, three seeds."""
    folder = tmp_path_factory.mktemp("results") / "synthetic"
    folder.mkdir()
    tasks = [NARROW, WIDE]
    _manifest(folder, tasks, SETTINGS, failed=True)
    _write(folder, "train.csv", [r for t, slow in zip(tasks, (1, 2), strict=True)
                                 for s in SETTINGS for r in _train_rows(t, s, slow)])  # fmt: skip
    _write(folder, "quality.csv", [r for t in tasks for s in SETTINGS for r in _quality_rows(t, s)])
    _write(folder, "cost.csv", _cost_rows(tasks))
    # The two widths as one scaling family (the same cost rows with family, axis and size).
    scaling = [{"family": "mlp-x", "axis": "width", "size": int(r["task"].split("=")[1]), **r}
               for r in _cost_rows(tasks)]  # fmt: skip
    _write(folder, "scaling.csv", scaling)
    _write(
        folder,
        "diagnostics.csv",
        [r for t in tasks for s in (SVD_K1, SVD_K4) for r in _diagnostic_rows(t, s)],
    )
    blog = dict.fromkeys(BLOG_COLUMNS, 0.5) | {"dataset": "mlp-a", "label": "a", "seed": 0}
    pd.DataFrame([blog], columns=list(BLOG_COLUMNS)).to_csv(folder / "blog.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def report(results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_reports(results, tmp_path_factory.mktemp("reports") / "synthetic")


def _table(path: Path) -> dict[str, dict[str, str]]:
    """A pipe table in a markdown file: first-column value -> {header: cell}."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


FIGURES = ("accuracy-vs-time", "quality-layers-mlp-x_width_32", "quality-layers-mlp-x_width_64",
           "cosine-vs-k", "accuracy-vs-width", "target-vs-keep", "svd-projection-error",
           "performance-profile", "blog-table", "memory-vs-time", "scaling")  # fmt: skip


def test_every_table_and_figure_is_written_and_linked(report: Path) -> None:
    folder = report.parent
    index = report.read_text()
    for name in FIGURES:
        for ext in ("png", "svg"):
            path = folder / "figures" / f"{name}.{ext}"
            assert path.stat().st_size > 1000, path
            assert f"(figures/{name}.{ext})" in index
    for task in ("mlp-x_width_32", "mlp-x_width_64"):
        for suffix in ("", "-quality"):
            assert (folder / "tables" / f"{task}{suffix}.md").exists()
            assert f"(tables/{task}{suffix}.md)" in index
    skipped = [line for line in index.splitlines() if line.startswith("**Skipped:**")]
    assert len(skipped) == 2 and all("--preset claims" in line for line in skipped)  # papers'
    assert "failed: `cost/mlp-x:width=32/broken/step`: RuntimeError: kaboom" in index
    for task in ("mlp-x_width_32", "mlp-x_width_64"):
        assert f"(tables/baselines-{task}.md)" in index
    assert "(tables/scaling.md)" in index
    # Claims, two task tables, two baseline tables, two rankings, two skipped paper figures, one
    # layers section for two figures.
    assert index.count("Source: ") == 9 + len(FIGURES) - 1


def test_task_table_holds_the_hand_computed_numbers(report: Path) -> None:
    rows = _table(report.parent / "tables" / "mlp-x_width_32.md")
    assert list(rows) == ["backprop", "sparse-vjp:keep=0.25", "sparse-vjp:keep=0.5",
                          "svd-subspace:k=1", "svd-subspace:k=4"]  # fmt: skip
    bp, k25, k50 = rows["backprop"], rows["sparse-vjp:keep=0.25"], rows["sparse-vjp:keep=0.5"]
    # backprop reaches 0.8 at step 20 (seed 0, 2.0 s), step 10 (seed 1, 1.0 s), never (seed 2):
    # median of {1, 2, inf} = 2 s, spread [1, inf], 2 of 3 seeds; FLOPs 100 per step.
    assert bp["s to target: median [min, max]"] == "2 [1, ∞]"
    assert bp["FLOPs to target: median [min, max]"] == "2e+03 [1e+03, ∞]"
    assert bp["reached"] == "2/3"
    # keep=0.5 reaches it at step 10 on every seed: 0.5 s, 600 FLOPs; speedups 2/0.5, 2000/600.
    assert k50["s to target: median [min, max]"] == "0.5 [0.5, 0.5]"
    assert (k50["speedup (time)"], k50["speedup (FLOPs)"]) == ("4", "3.33")
    # keep=0.25 reaches it at step 20: 0.8 s, 800 FLOPs -> speedups 2.5 and 2.5.
    assert (k25["speedup (time)"], k25["speedup (FLOPs)"]) == ("2.5", "2.5")
    assert rows["svd-subspace:k=1"]["reached"] == "0/3"
    assert rows["svd-subspace:k=1"]["s to target: median [min, max]"] == "∞ [∞, ∞]"
    # quality: cosine 0.3 and 0.5 on two seeds -> median 0.4, intervals +-0.1 -> [0.2, 0.6].
    assert k25["cosine [95% CI]"] == "0.4 [0.2, 0.6]"
    assert k25["rel. MSE [95% CI]"] == "2.1 [1.5, 2.7]"
    assert (k25["FLOPs ×"], k25["elementwise ×"], k25["memory ×"]) == ("0.55", "1.1", "1.1")
    assert (k25["time × [95% CI]"], k25["A/A ×"]) == ("0.5 [0.2, 1.4] (noisy)", "1.2")
    assert (k50["time × [95% CI]"], k50["A/A ×"]) == ("0.8 [0.7, 0.9]", "1.01")
    assert (k25["work MSE [95% CI]"], k25["c*"]) == ("1.65 [1.2, 2.1]", "0.5")
    # keep=0.25's seeds each reject bias = 0 at p = 0.001: Fisher's X = -2 * 2 ln 0.001 = 27.6
    # on chi²(4), p = exp(-X/2) (1 + X/2) = 1.5e-05; keep=0.5's p = 0.5 twice: 0.25 * 2.39.
    assert (k25["rel. bias ± se (* p < 0.05)"], k25["bias p"]) == ("0.2 ± 0.05 *", "1.5e-05")
    assert (k50["rel. bias ± se (* p < 0.05)"], k50["bias p"]) == ("0.2 ± 0.3", "0.6")
    wide = _table(report.parent / "tables" / "mlp-x_width_64.md")["backprop"]
    assert wide["s to target: median [min, max]"] == "4 [2, ∞]"  # every second doubled


def test_index_states_findings_with_their_numbers(report: Path) -> None:
    index = report.read_text()
    assert (
        "Fastest other setting to the target: sparse-vjp:keep=0.5, median 0.5 [0.5, 0.5] s "
        "(3/3 seeds); speedup over backprop 4× in time; speedup over backprop 3.33× in FLOPs."
    ) in index
    assert "Backprop reaches the target accuracy 0.8 in a median 2 [1, ∞] s (2/3 seeds)." in index
    # both tasks: keep=0.5 fastest; keep=0.25 at 0.8/0.5 = 1.6x; svd k=4 at 1.8/0.5 = 3.6x.
    assert "sparse-vjp:keep=0.5 is the fastest on 2/2 tasks" in index
    assert (
        "sparse-vjp:keep=0.25 is the fastest on 0/2 tasks, within 2× of the fastest on 2/2" in index
    )
    assert "svd-subspace:k=4 is the fastest on 0/2 tasks, within 2× of the fastest on 0/2" in index
    assert (
        "svd-subspace's cosine goes from 0.6 [0.5, 0.7] at k=1 to 0.9 [0.85, 0.95] at k=4: "
        "higher at k=4, the two 95% intervals apart"
    ) in index
    # 3 seeds x 3 eval windows per setting, errors 0.3 / 0.6 / 0.4, one re-fit (seed 0, step 20).
    assert "over 9 eval windows (seeds pooled; range 0.3-0.6); 1 of those windows" in index
    # final accuracies 0.9, 0.9, 0.75 at both widths: mean 0.85.
    assert "backprop's final validation accuracy goes from 0.85 at width 32 to 0.85" in index


def test_absent_data_gives_skip_lines_not_errors(tmp_path: Path) -> None:
    """Only train.csv, one setting: the table and accuracy curve; every other part skipped.
    Files an earlier report left in the folder are replaced; other files are kept."""
    folder = tmp_path / "only-train"
    folder.mkdir()
    _manifest(folder, [NARROW], (BACKPROP,))
    _write(folder, "train.csv", _train_rows(NARROW, BACKPROP, 1))
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "cosine-vs-k.png").write_bytes(b"stale")
    (out / "notes.txt").write_text("mine")
    index = build_reports(folder, out).read_text()
    assert index.count("**Skipped:**") == 14  # the two rankings and two paper figures among them
    assert "needs both quality.csv and cost.csv" in index and "no cost.csv" in index
    assert index.count("**Skipped:** the results hold no quality.csv rows") == 2  # layers, k
    for reason in ("two or more widths", "two or more values of `keep`",
                   "named `projection_error*`", "only one estimator setting",
                   "the results hold no blog.csv"):  # fmt: skip
        assert reason in index
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["accuracy-vs-time.png", "accuracy-vs-time.svg"]
    assert (out / "notes.txt").read_text() == "mine"
    row = _table(out / "tables" / "mlp-x_width_32.md")["backprop"]
    assert "cosine [95% CI]" not in row and row["reached"] == "2/3"


def test_default_out_is_reports_slash_results_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "quick"
    folder.mkdir()
    _manifest(folder, [NARROW], (BACKPROP,))
    monkeypatch.chdir(tmp_path)
    assert main(["--results", str(folder)]) == 0
    assert (tmp_path / "reports" / "quick" / "index.md").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "is not a results folder: it has no manifest.json"),
        (lambda p: p.mkdir() or (p / "manifest.json").write_text("{"), "is corrupt"),
    ],
)
def test_a_folder_that_is_not_results_is_one_line_and_status_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], object],
    message: str,
) -> None:
    make(tmp_path / "r")
    assert main(["--results", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "o").exists()


def test_command_line_exit_status(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reports", "--results", str(tmp_path / "missing")],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "does not exist" in proc.stderr


def _one_task(
    folder: Path,
    quality: dict[tuple[str, str], dict] | None = None,
    cost: dict[tuple[str, str], dict] | None = None,
) -> Path:
    """A results folder of one task (NARROW) with every setting, its quality and cost rows
    changed per setting by `quality` / `cost`; returns the folder."""
    folder.mkdir()
    _manifest(folder, [NARROW], SETTINGS)
    _write(folder, "train.csv", [r for s in SETTINGS for r in _train_rows(NARROW, s, 1)])
    _write(folder, "quality.csv", [r | (quality or {}).get(s, {}) for s in SETTINGS
                                   for r in _quality_rows(NARROW, s)])  # fmt: skip
    _write(folder, "cost.csv", [r | (cost or {}).get((r["estimator"], r["params"]), {})
                                for r in _cost_rows([NARROW])])  # fmt: skip
    return folder


def test_a_folder_written_before_protocol_2_loads_with_the_new_columns_absent(
    tmp_path: Path,
) -> None:
    """quality.csv and cost.csv with the old headers (the columns less ADDED_IN_2): the report
    is built, the new columns read as NaN and show as "-", no claim rests on them."""
    folder = _one_task(tmp_path / "old")
    for file in ("quality.csv", "cost.csv"):
        old = tuple(c for c in COLUMNS[file] if c not in ADDED_IN_2[file])
        pd.read_csv(folder / file)[list(old)].to_csv(folder / file, index=False, na_rep="nan")
    res = load_results(folder)
    assert res.legacy == {"quality.csv", "cost.csv"}
    for file in ("quality.csv", "cost.csv"):
        frame = res.frame(file)
        assert frame is not None and tuple(frame.columns) == COLUMNS[file]
        assert frame[list(ADDED_IN_2[file])].isna().all().all()
    index = build_reports(folder, tmp_path / "report").read_text()
    assert "quality.csv was written before protocol 2" in index
    k25 = _table(tmp_path / "report" / "tables" / "mlp-x_width_32.md")["sparse-vjp:keep=0.25"]
    assert (k25["time × [95% CI]"], k25["A/A ×"], k25["bias p"]) == ("0.5 [-, -]", "-", "-")
    assert k25["work MSE [95% CI]"] == "1.65 [-, -]"
    assert "more gradient information per FLOP" not in index
    assert "a significant bias" not in index
    assert "no bias test in the results" in index
    closing = closing_table(res)
    assert "time x" in closing and "modelled s" in closing and "(noisy)" not in closing


def test_a_header_of_neither_protocol_is_a_one_line_error(tmp_path: Path) -> None:
    folder = _one_task(tmp_path / "r")
    old = [c for c in COLUMNS["cost.csv"] if c not in ADDED_IN_2["cost.csv"]]
    columns = [*old[:-2], "aa_ratio", "cell"]  # memory_ratio swapped for a new column
    pd.read_csv(folder / "cost.csv")[columns].to_csv(folder / "cost.csv", index=False)
    with pytest.raises(ReportError) as err:
        load_results(folder)
    assert "cost.csv is corrupt: its header is not" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_significant_and_a_non_significant_bias_are_worded_differently(report: Path) -> None:
    """Hotelling p per seed 0.001 (keep=0.25) and 0.5 (keep=0.5), relative bias 0.2 both."""
    index = report.read_text()
    assert "a significant bias for sparse-vjp:keep=0.25 (0.2 ± 0.05, p = 1.5e-05)" in index
    assert (
        "no significant bias (not distinguishable from 0 at these draws) for "
        "sparse-vjp:keep=0.5 (0.2 ± 0.3, p = 0.6)"
    ) in index
    significant = index.split("a significant bias for ")[1].split(";")[0]
    assert "keep=0.25" in significant and "keep=0.5 " not in significant


@pytest.mark.parametrize(("hi", "claimed"), [(1.2, False), (0.9, True)])
def test_more_information_per_flop_needs_the_whole_interval_below_1(
    tmp_path: Path, hi: float, claimed: bool
) -> None:
    """Every setting's work MSE 0.5 [0.2, hi] with c* = 0.01 (a shrunk estimate): only an
    interval wholly below 1 is called more informative; one containing 1 is undecided."""
    work = {"work_mse": 0.5, "work_mse_lo": 0.2, "work_mse_hi": hi, "work_scale": 0.01}
    folder = _one_task(tmp_path / "r", quality=dict.fromkeys(SETTINGS[1:], work))
    index = build_reports(folder, tmp_path / "report").read_text()
    assert ("more gradient information per FLOP" in index) is claimed
    assert ("contains 1 (not distinguishable from a backprop mini-batch" in index) is not claimed
    assert "scale-invariant" in index and f"0.5 [0.2, {hi}], c* 0.01" in index


def test_an_interval_at_the_no_information_level_is_called_uninformative(tmp_path: Path) -> None:
    """0.5 [0.2, 0.9] lies below 1, but an estimate carrying nothing about G would score 0.7 at
    this FLOP ratio (`work_floor`): the interval reaches it, so no "more information" claim."""
    work = {"work_mse": 0.5, "work_mse_lo": 0.2, "work_mse_hi": 0.9, "work_scale": 0.01,
            "work_floor": 0.7}  # fmt: skip
    folder = _one_task(tmp_path / "r", quality=dict.fromkeys(SETTINGS[1:], work))
    index = build_reports(folder, tmp_path / "report").read_text()
    assert "more gradient information per FLOP" not in index
    assert "reaches the no-information level `work_floor`" in index


def test_overlapping_cosine_intervals_name_no_closest_setting(tmp_path: Path) -> None:
    """svd k=4's cosine 0.9 [0.85, 0.95] against k=1's 0.6 widened to [0.5, 0.86]."""
    wide = {"cosine_hi": 0.86}
    folder = _one_task(tmp_path / "r", quality={SVD_K1: wide})
    index = build_reports(folder, tmp_path / "report").read_text()
    assert "closest to the exact gradient" not in index
    assert (
        "the highest cosine with the exact gradient is svd-subspace:k=4's, 0.9 [0.85, 0.95], "
        "but it is not distinguishable at these draws from svd-subspace:k=1 (0.6 [0.5, 0.86])"
    ) in index


def test_a_noisy_cost_cell_is_marked_and_left_out_of_cheapest_and_fastest(
    report: Path, results: Path
) -> None:
    """keep=0.25 has the fewest FLOPs (0.55×) and the lowest time ratio (0.5×), but its cell
    is noisy: the cheapest is svd k=1 (0.6×), the fastest keep=0.5 (0.8 [0.7, 0.9]×)."""
    index = report.read_text()
    assert "sparse-vjp:keep=0.25 (time 0.5 [0.2, 1.4] (noisy), A/A 1.2)" in index
    assert (
        "Cheapest step in FLOPs among cost cells not marked noisy: svd-subspace:k=1 at 0.6× "
        "backprop's"
    ) in index
    assert (
        "Fastest step in time among cost cells not marked noisy: sparse-vjp:keep=0.5 at "
        "0.8 [0.7, 0.9]× backprop's (A/A control 1.01×): faster than backprop's step (its "
        "interval is below 1)."
    ) in index
    for sentence in ("Cheapest step", "Fastest step", "In modelled seconds"):
        lines = [line for line in index.splitlines() if sentence in line]
        assert lines and not any("keep=0.25" in line for line in lines)
    closing = closing_table(load_results(results))
    assert closing.count("0.5 (noisy)") == 2 and "0.8 (noisy)" not in closing


def test_modelled_seconds_are_steps_to_target_times_the_cost_cells_step_time(
    report: Path, results: Path
) -> None:
    """backprop reaches the target at steps 20, 10, never (median 20, [10, ∞]) with 0.02 s a
    step: 0.4 [0.2, ∞] s; keep=0.5 at step 10 with 0.015 s: 0.15 s, speedup 0.4 / 0.15. The
    wide task's wall seconds double, its modelled seconds (same steps, same cost) do not."""
    narrow = _table(report.parent / "tables" / "mlp-x_width_32.md")
    wide = _table(report.parent / "tables" / "mlp-x_width_64.md")
    column = "modelled s to target: median [min, max]"
    assert narrow["backprop"][column] == wide["backprop"][column] == "0.4 [0.2, ∞]"
    assert wide["backprop"]["s to target: median [min, max]"] == "4 [2, ∞]"
    assert narrow["sparse-vjp:keep=0.5"][column] == "0.15 [0.15, 0.15]"
    assert narrow["sparse-vjp:keep=0.5"]["speedup (modelled)"] == "2.67"
    assert narrow["svd-subspace:k=4"][column] == "0.6 [0.6, 0.6]"  # step 20 × 0.03 s
    assert narrow["svd-subspace:k=1"][column] == "∞ [∞, ∞]"
    assert (
        "the fastest other setting to the target among cost cells not marked noisy is "
        "sparse-vjp:keep=0.5: median 0.15 [0.15, 0.15] s, backprop's 0.4 s (speedup over backprop "
        "2.67× in time)."
    ) in report.read_text()
    closing = closing_table(load_results(results)).splitlines()
    assert closing[0] == "mlp-x:width=32 (target accuracy 0.8)" and "modelled s" in closing[1]
    assert closing[3].split()[:4] == ["backprop", "0.9", "2", "0.4"]


def test_accuracy_bands_are_95_percent_t_intervals_over_seeds(report: Path) -> None:
    """backprop's final accuracies 0.9, 0.9, 0.75: mean 0.85, sd 0.0866, t(0.975, 2) = 4.303,
    half-width 4.303 × 0.0866 / sqrt(3) = 0.215 -> [0.635, 1.07], 1.07 shown clipped to 1 (a normal
    ± se: ± 0.05)."""
    index = report.read_text()
    assert "backprop's is 0.85 [0.635, 1] (95% t-interval over 3 seeds)" in index  # 1.07 clipped
    assert "band: 95% Student-t interval over seeds" in index
