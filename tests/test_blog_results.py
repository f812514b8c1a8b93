"""`blog.csv`: written by `python -m runners.study blog-table --out DIR`, drawn by
`reports/blog.py`.

The report checks use a results folder the test writes, with numbers chosen so that the table's
means and standard deviations can be worked out by hand (see the comments at each check).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from measurements.schema import BLOG_COLUMNS
from measurements.studies import blog_table
from measurements.studies.blog_table import BLOG
from measurements.study import StudyError
from reports import ReportError, build_reports
from runners import study

ACCURACIES = ("baseline_acc", "svd_acc", "blog_baseline_acc", "blog_svd_acc")
CPU = torch.device("cpu")


def _manifest(folder: Path) -> None:
    """The least `manifest.json` a results folder needs: a configuration, no cells."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"config": {"preset": "test", "tasks": []}, "cells": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _row(dataset: str, seed: int, delta: float, wgrad: float, time: float) -> dict[str, object]:
    """A blog.csv row: baseline 0.8, SVD 0.8 + delta; the blog's figures 0.5 / 0.54 / -75% /
    -45% for every data set."""
    return {
        "dataset": dataset, "label": f"{dataset}, toy", "seed": seed, "lr": 1.0,
        "baseline_acc": 0.8, "svd_acc": 0.8 + delta, "delta_acc": delta,
        "wgrad_flop_change": wgrad, "step_flop_change": -0.3, "step_time_change": time,
        "run_flop_change": -0.1, "refits": 1, "error": 0.9, "blog_baseline_acc": 0.5,
        "blog_svd_acc": 0.54, "blog_grad_flop_change": -0.75, "blog_time_change": -0.45,
    }  # fmt: skip


def _table(path: Path) -> dict[str, dict[str, str]]:
    """The pipe table in a markdown file: first-column value -> {header: cell}."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def test_blog_table_writes_one_row_per_data_set_and_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new" / "results"  # made by the runner
    assert study.run("blog-table:seeds=1,repeats=3,warmup=1", out, CPU, smoke=False) == {
        "blog.csv": len(BLOG)
    }
    printed = capsys.readouterr().out
    df = pd.read_csv(out / "blog.csv", keep_default_na=False, na_values=["nan"])
    assert tuple(df.columns) == BLOG_COLUMNS
    assert list(df["dataset"]) == list(BLOG) and set(df["seed"]) == {0}
    for column in ACCURACIES:
        assert df[column].map(math.isfinite).all() and df[column].between(0, 1).all(), column
    assert (df["delta_acc"] - (df["svd_acc"] - df["baseline_acc"])).abs().max() < 1e-12
    for row in df.to_dict("records"):
        blog = BLOG[row["dataset"]]
        assert row["label"] == blog.label and row["label"] in printed  # the same rows printed
        assert (row["blog_baseline_acc"], row["blog_svd_acc"]) == (blog.baseline, blog.svd)
        assert row["blog_grad_flop_change"] == blog.grad_flops
        assert row["blog_time_change"] == blog.wall_time
        assert -1 < row["wgrad_flop_change"] < 0  # the projected first layer is cheaper
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["studies"]["blog-table"]["spec"].startswith("blog-table:seeds=1,")
    assert sorted(p.name for p in out.iterdir()) == ["blog.csv", "manifest.json"]  # no .tmp


def test_blog_csv_joins_a_results_folder_and_replaces_an_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _manifest(tmp_path)
    config = json.loads((tmp_path / "manifest.json").read_text())["config"]
    (tmp_path / "blog.csv").write_text("stale\n")
    rows = {"blog.csv": [_row("mlp-a", 0, 0.01, -0.7, -0.1)]}
    fake = dataclasses.replace(blog_table.STUDY, measure=lambda s, d: rows)
    monkeypatch.setattr(blog_table, "STUDY", fake)
    study.run("blog-table", tmp_path, CPU, smoke=True)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["config"] == config and manifest["studies"]["blog-table"]["smoke"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blog.csv", "manifest.json"]
    df = pd.read_csv(tmp_path / "blog.csv")
    assert tuple(df.columns) == BLOG_COLUMNS and df["label"].tolist() == ["mlp-a, toy"]


@pytest.mark.parametrize(
    "options", ["seeds=0", "lr=0", "datasets=mlp-nope", "datasets=mlp-diabetes+mlp-x"]
)
def test_bad_settings_are_a_study_error(options: str) -> None:
    with pytest.raises(StudyError, match="blog-table"):
        blog_table.STUDY.configure(options)
    assert blog_table.STUDY.configure("datasets=mlp-diabetes+mlp-digits-1vr").datasets == (
        "mlp-diabetes", "mlp-digits-1vr"
    )  # fmt: skip


def test_blog_section_holds_the_hand_computed_numbers(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _manifest(results)
    rows = [
        _row("mlp-a", seed, delta, -0.7, time)
        for seed, delta, time in ((0, 0.01, -0.1), (1, 0.02, -0.2), (2, 0.03, -0.3))
    ]
    rows.append(_row("mlp-b", 0, -0.05, -0.8, 0.4))  # fmt: skip
    pd.DataFrame(rows, columns=list(BLOG_COLUMNS)).to_csv(results / "blog.csv", index=False)
    index = build_reports(results, tmp_path / "report")
    folder = index.parent
    table = _table(folder / "tables" / "blog-table.md")
    assert list(table) == ["mlp-a, toy (`mlp-a`)", "mlp-b, toy (`mlp-b`)"]
    a, b = table["mlp-a, toy (`mlp-a`)"], table["mlp-b, toy (`mlp-b`)"]
    # mlp-a: delta 1, 2, 3 pp -> mean 2, sample std 1; FLOPs -70 each -> std 0; time -10, -20,
    # -30 % -> mean -20, std 10. The blog: 54 - 50 = +4 pp, -75 %, -45 %.
    assert a["seeds"] == "3"
    assert (a["Δ acc (pp): ours"], a["Δ acc (pp): blog"]) == ("+2.0 ± 1.0", "+4.0")
    assert (a["grad FLOPs (%): ours"], a["grad FLOPs (%): blog"]) == ("-70.0 ± 0.0", "-75.0")
    assert (a["step time (%): ours"], a["step time (%): blog"]) == ("-20.0 ± 10.0", "-45.0")
    # one seed: the mean alone, no spread
    assert (b["seeds"], b["Δ acc (pp): ours"], b["step time (%): ours"]) == ("1", "-5.0", "+40.0")
    text = index.read_text()
    assert "| mlp-a, toy (`mlp-a`) | 3" in text  # the table is in the index too
    assert (
        "On mlp-a, toy (3 seeds): Δ acc +2.0 ± 1.0 pp (blog +4.0 pp); grad FLOPs -70.0 ± 0.0 % "
        "(blog -75.0 %); step time -20.0 ± 10.0 % (blog -45.0 %)."
    ) in text
    # time -20 and +40 against the blog's -45: at or below it on 0 of 2; FLOPs -70, -80 vs -75.
    assert "Our mean step time change is at or below the blog's on 0/2 data sets." in text
    assert "Our mean grad FLOPs change is at or below the blog's on 1/2 data sets." in text
    for ext in ("png", "svg"):
        assert (folder / "figures" / f"blog-table.{ext}").stat().st_size > 1000
        assert f"(figures/blog-table.{ext})" in text
    assert "(tables/blog-table.md)" in text


def test_without_blog_csv_the_section_is_skipped_with_its_reason(tmp_path: Path) -> None:
    _manifest(tmp_path / "results")
    text = build_reports(tmp_path / "results", tmp_path / "report").read_text()
    reason = "the results hold no blog.csv (write it with `python -m runners.study blog-table --out"
    assert f"Figure: the SVD blog post's table beside ours: skipped ({reason}" in text
    assert f"**Skipped:** {reason}" in text
    assert not (tmp_path / "report" / "figures" / "blog-table.png").exists()


def test_a_blog_csv_with_another_header_is_a_report_error(tmp_path: Path) -> None:
    _manifest(tmp_path / "results")
    (tmp_path / "results" / "blog.csv").write_text("dataset,seed\nmlp-a,0\n")
    with pytest.raises(ReportError, match=r"blog\.csv is corrupt: its header is not"):
        build_reports(tmp_path / "results", tmp_path / "report")
