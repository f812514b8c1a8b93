"""`python -m runners.sweep`: listing, an end-to-end run, failed cells, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from estimators import Batch, Estimate, GradientEstimator
from measurements.schema import COLUMNS
from runners.sweep import main
from tasks import get_task

SMALL = ["--tasks", "mlp-diabetes", "mlp-synthetic20", "--steps", "30", "--measure", "train",
         "--no-reports"]  # fmt: skip


def test_list_shows_estimators_tasks_and_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "backprop" in out and "yes" in out
    for name in ("mlp-mnist1d", "bagnet-digits", "vit-digits"):
        task = get_task(name)
        assert name in out and f"{task.n_params:,}" in out and f"{task.target_acc:.2f}" in out
    assert "quick" in out


def test_sweep_writes_train_csv_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([*SMALL, "--estimators", "backprop", "--seeds", "2", "--out", str(out)]) == 0
    df = pd.read_csv(out / "train.csv")
    assert tuple(df.columns) == COLUMNS["train.csv"]
    assert set(df["task"]) == {"mlp-diabetes", "mlp-synthetic20"}
    assert set(df["seed"]) == {0, 1} and set(df["params"]) == {"-"}
    finals = df[df["status"] == "completed"]
    assert len(finals) == 4 and set(finals["step"]) == {30}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tasks"]["mlp-diabetes"]["n_params"] == get_task("mlp-diabetes").n_params
    assert manifest["tasks"]["mlp-diabetes"]["n_val"] == 89  # 20% of sklearn's 442
    assert manifest["finished"] is not None
    assert manifest["environment"]["torch"] == torch.__version__
    assert {c["status"] for c in manifest["cells"].values()} == {"done"}
    assert len(manifest["cells"]) == 4


class Boom(GradientEstimator):
    """Formula: raises (a test double for a broken estimator)."""

    name = "test-boom"
    unbiased = False

    def estimate(self, batch: Batch, generator: torch.Generator) -> Estimate:
        raise RuntimeError("kaboom")


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([*SMALL, "--estimators", "test-boom", "backprop", "--out", str(out)]) == 0
    cells = json.loads((out / "manifest.json").read_text())["cells"]
    failed = {k: c for k, c in cells.items() if c["status"] == "failed"}
    assert set(failed) == {
        "train/mlp-diabetes/test-boom/seed=0",
        "train/mlp-synthetic20/test-boom/seed=0",
    }
    assert all("kaboom" in c["error"] for c in failed.values())
    assert set(pd.read_csv(out / "train.csv")["estimator"]) == {"backprop"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "nope"], "unknown task 'nope'; valid: mlp-mnist1d"),
        (["--estimators", "nope"], "unknown estimator 'nope'; valid: backprop"),
        (["--estimators", "backprop:k=1"], "backprop: unknown parameter 'k'"),
        (
            ["--preset", "nope"],
            "unknown preset 'nope'; valid: claims, full, paper-cv, paper-scaling, paper-svd, "
            "paper-vjp, paper-wperp, quick",
        ),
        (
            ["--measure", "vibes"],
            "unknown measurement 'vibes'; valid: train, quality, cost, scaling",
        ),
        (["--draws", "1"], "--draws must be >= 2"),
        (["--tasks", "mlp-mnist1d:wide=3"], "unknown model option 'wide=3'; valid: width, depth"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--tasks", "mlp-mnist"], "MNIST needs --data-root"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_missing_data_root_without_download(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nowhere"
    args = ["--tasks", "vit-cifar10", "--data-root", str(missing), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "--download" in capsys.readouterr().err and not missing.exists()


def test_an_occupied_results_folder_is_left_untouched(tmp_path: Path, capsys) -> None:
    out = tmp_path / "old"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main([*SMALL, "--estimators", "backprop", "--out", str(out)]) == 2
    assert "already holds files that are not a sweep's" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_command_line_as_a_user_runs_it(tmp_path: Path) -> None:
    """A subprocess in a fresh folder: bad input is one line; then results and the report."""
    bad = subprocess.run(
        [sys.executable, "-m", "runners.sweep", "--estimators", "fg-nope"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert (
        bad.stderr.startswith("error: unknown estimator 'fg-nope'")
        and "Traceback" not in bad.stderr
    )
    ok = subprocess.run(
        [sys.executable, "-m", "runners.sweep", "--tasks", "mlp-diabetes", "--estimators",
         "backprop", "--steps", "10", "--measure", "train", "--out", "results/r"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "results: results/r" in ok.stdout and (tmp_path / "results/r/train.csv").exists()
    assert "report: reports/r/index.md" in ok.stdout
    assert (tmp_path / "reports/r/index.md").exists()
