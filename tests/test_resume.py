"""Interrupted sweeps resume to the same results; broken folders are refused clearly."""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.kill_resume import (
    comparable_tables,
    finish,
    kill_in_writes,
    mtime,
    same_tables,
    start_or_resume,
    sweep_process,
    truncate_a_table,
    wait_for_write,
)
from measurements import store as results
from runners.sweep import main

CONFIG = ["--tasks", "mlp-diabetes", "--estimators", "backprop", "--seeds", "3", "--steps", "20",
          "--seconds", "0",
          "--draws", "4"]  # fmt: skip


SMALL = ["--tasks", "mlp-diabetes", "--estimators", "backprop", "--seeds", "2", "--steps", "10",
         "--seconds", "0", "--draws", "4", "--measure", "quality,train"]  # fmt: skip


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny sweep (quality and training, two seeds), never changed by the tests."""
    out = tmp_path_factory.mktemp("whole") / "r"
    assert main([*SMALL, "--out", str(out), "--no-reports"]) == 0
    return out


def test_killed_and_resumed_sweep_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    """SIGKILL at random moments once under way (seed 0), resume: each cell once, same numbers."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert sweep_process(*CONFIG, "--out", str(whole)).wait() == 0
    rng = random.Random(0)
    for _ in range(3):
        before = mtime(broken / "manifest.json")
        proc = start_or_resume(broken, CONFIG)
        wait_for_write(broken / "manifest.json", before, proc, timeout=120)  # under way
        time.sleep(rng.uniform(0.0, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert finish(broken, CONFIG) == {"done"}
    manifest = json.loads((broken / "manifest.json").read_text())
    train = pd.read_csv(broken / "train.csv")
    assert set(train["cell"]) == set(k for k in manifest["cells"] if k.startswith("train/"))
    assert train.groupby("cell")["step"].apply(lambda s: s.is_unique).all()
    same_tables(broken, whole)


def test_killed_mid_write_ten_times_and_cut_by_hand_equals_an_uninterrupted_one(
    whole: Path, tmp_path: Path
) -> None:
    """Ten SIGKILLs in the middle of a table write (write 1..3, fraction of it: random, seed 0),
    then a table cut at a random byte of a finished sweep: `--resume` repairs it to the same
    tables as an uninterrupted run, each row once."""
    rng, folder = random.Random(0), tmp_path / "r"
    lines = kill_in_writes(folder, SMALL, 10, rng)
    assert sum("killed mid-write" in line for line in lines) == 10
    statuses = {
        c["status"] for c in json.loads((folder / "manifest.json").read_text())["cells"].values()
    }
    assert statuses == {"done"}
    truncate_a_table(folder, rng)
    assert finish(folder, SMALL) == {"done"}
    same_tables(folder, whole, ("train.csv", "quality.csv"))


def test_rows_of_an_unfinished_cell_are_dropped_on_resume(tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = [*CONFIG[:2], "--estimators", "backprop", "--steps", "10", "--measure", "train"]
    assert main([*args, "--out", str(out), "--no-reports"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    key = "train/mlp-diabetes/backprop/seed=0"
    manifest["cells"][key] = {"status": "pending"}  # as if killed between the two writes
    results.write_manifest(out, manifest)
    assert main(["--resume", "--out", str(out), "--no-reports"]) == 0
    train = pd.read_csv(out / "train.csv")
    assert (train["cell"] == key).sum() == len(train) and train["step"].is_unique


def test_resume_refuses_selection_flags(tmp_path: Path, capsys) -> None:
    assert main(["--resume", "--tasks", "mlp-diabetes", "--out", str(tmp_path)]) == 2
    assert "drop --tasks" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "does not exist; nothing to resume"),
        (lambda p: p.mkdir(), "is not a results folder: it has no manifest.json"),
        (lambda p: (p.mkdir(), (p / "manifest.json").write_text("{oops")), "is corrupt"),
        (lambda p: (p.mkdir(), (p / "manifest.json").write_text("[]")), "not an object"),
        (lambda p: (p.mkdir(), (p / "manifest.json").write_text("{}")), "lacks 'config'"),
        (
            lambda p: (
                p.mkdir(),
                (p / "manifest.json").write_text('{"config": {}, "cells": {}}'),
                (p / "train.csv").write_text("not,a,header\n"),
            ),
            "train.csv has a header that is not the schema's",
        ),
    ],
)
def test_broken_results_folders_are_one_clear_line(tmp_path: Path, capsys, setup, message) -> None:
    folder = tmp_path / "res"
    setup(folder)
    before = sorted(p.name for p in folder.iterdir()) if folder.exists() else None
    assert main(["--resume", "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert (sorted(p.name for p in folder.iterdir()) if folder.exists() else None) == before


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _cut_mid_row(folder: Path) -> None:
    """The end of quality.csv lost in the middle of its last row."""
    text = (folder / "quality.csv").read_text()
    (folder / "quality.csv").write_text(text[: len(text) - 25])


def _delete_row(folder: Path) -> None:
    lines = _lines(folder / "train.csv")
    (folder / "train.csv").write_text("".join(lines[:2] + lines[3:]))


def _change_row(folder: Path) -> None:
    lines = _lines(folder / "quality.csv")
    fields = lines[4].split(",")
    fields[6] = "0.123"  # a cosine
    lines[4] = ",".join(fields)
    (folder / "quality.csv").write_text("".join(lines))


def _duplicate_row(folder: Path) -> None:
    lines = _lines(folder / "train.csv")
    (folder / "train.csv").write_text("".join([*lines, lines[1]]))


@pytest.mark.parametrize("damage", [_cut_mid_row, _delete_row, _change_row, _duplicate_row])
def test_resume_reruns_exactly_the_damaged_cells(whole: Path, tmp_path: Path, capsys, damage):
    """Rows missing, cut off, changed or doubled: the cell they belong to (and only it) is run
    again, the repair is said in one line, the original table is kept aside, and the folder ends
    equal to the undamaged one (wall-clock columns aside)."""
    folder = tmp_path / "r"
    shutil.copytree(whole, folder)
    damage(folder)
    before = json.loads((folder / "manifest.json").read_text())["cells"]
    assert main(["--resume", "--out", str(folder), "--no-reports"]) == 0
    repaired = [line for line in capsys.readouterr().err.splitlines() if "repaired" in line]
    assert len(repaired) == 1 and "1 done cells whose rows disagree" in repaired[0]
    after = json.loads((folder / "manifest.json").read_text())["cells"]
    assert {c["status"] for c in after.values()} == {"done"}
    rerun = {k for k in after if after[k] != before[k]}
    assert len(rerun) == 1, rerun
    assert list(folder.glob("*.before-repair"))
    ours = comparable_tables(folder, ("train.csv", "quality.csv"))
    theirs = comparable_tables(whole, ("train.csv", "quality.csv"))
    for file, table in theirs.items():
        pd.testing.assert_frame_equal(ours[file], table, check_exact=False, rtol=1e-9)


def test_reports_refuse_a_damaged_folder_or_warn_on_every_page(
    whole: Path, tmp_path: Path, capsys
) -> None:
    from reports.__main__ import main as reports_main

    folder = tmp_path / "r"
    shutil.copytree(whole, folder)
    _delete_row(folder)
    assert reports_main(["--results", str(folder), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow-damaged" in err and "--resume" in err
    assert not (tmp_path / "rep").exists()
    args = ["--results", str(folder), "--out", str(tmp_path / "rep"), "--allow-damaged"]
    assert reports_main(args) == 0
    pages = [tmp_path / "rep" / "index.md", *(tmp_path / "rep" / "tables").glob("*.md")]
    assert len(pages) > 1
    assert all(p.read_text().startswith("> **Warning: ") for p in pages)
    assert "Warning: " in (tmp_path / "rep" / "index.html").read_text()
