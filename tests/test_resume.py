"""Interrupted sweeps resume to the same results; broken folders are refused clearly."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.kill_resume import (
    comparable_tables,
    mtime,
    start_or_resume,
    sweep_process,
    wait_for_write,
)
from measurements import store as results
from runners.sweep import main

CONFIG = ["--tasks", "mlp-diabetes", "--estimators", "backprop", "--seeds", "3", "--steps", "20",
          "--seconds", "0",
          "--draws", "4"]  # fmt: skip


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
    final = start_or_resume(broken, CONFIG)
    assert final.wait() == 0, final.stderr.read() if final.stderr else ""
    manifest = json.loads((broken / "manifest.json").read_text())
    assert {c["status"] for c in manifest["cells"].values()} == {"done"}
    train = pd.read_csv(broken / "train.csv")
    assert set(train["cell"]) == set(k for k in manifest["cells"] if k.startswith("train/"))
    assert train.groupby("cell")["step"].apply(lambda s: s.is_unique).all()
    ours, theirs = comparable_tables(broken), comparable_tables(whole)
    for file, table in theirs.items():
        pd.testing.assert_frame_equal(ours[file], table, check_exact=False, rtol=1e-9)


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
        (lambda p: (p.mkdir(), (p / "manifest.json").write_text("[]")), "lacks 'config'"),
        (
            lambda p: (
                p.mkdir(),
                (p / "manifest.json").write_text('{"config": {}, "cells": {}}'),
                (p / "train.csv").write_text("not,a,header\n"),
            ),
            "train.csv is corrupt",
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
