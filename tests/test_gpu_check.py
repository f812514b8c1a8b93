"""`python -m runners.gpu_check`: skips cleanly without a GPU; its checks run (on the CPU here,
on CUDA where present) and its bias statistic tells centred draws from shifted ones."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from runners.gpu_check import BIAS_T, bias_t, main


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_a_gpu_it_prints_one_line_and_exits_0() -> None:
    done = subprocess.run([sys.executable, "-m", "runners.gpu_check"], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "gpu_check: skipped, torch sees no CUDA device\n" and not done.stderr


def test_the_checks_run_on_the_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--device", "cpu", "--tasks", "mlp-diabetes", "--estimators", "backprop",
            "fg-weight", "spsa", "--steps", "3", "--draws", "16"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("gpu_check on cpu: 8 passed, 0 failed")
    assert not [line for line in out[:-1] if not line.startswith("ok   mlp-diabetes")]


def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--device", "cpu", "--tasks", "nope"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_bias_statistic_separates_centred_and_shifted_draws() -> None:
    """T for R = 32 draws of a 200-dimensional N(g, I) (seed 0): about 1; with the mean shifted
    by 3 standard errors per coordinate, about 1 + 9 = 10; by 10, about 101 > BIAS_T."""
    gen = torch.Generator().manual_seed(0)
    truth = torch.randn(200, generator=gen, dtype=torch.float64)
    noise = torch.randn(32, 200, generator=gen, dtype=torch.float64)
    centred = bias_t(truth + noise, truth)
    assert 0.5 < centred < 2.0
    assert 5 < bias_t(truth + noise + 3 / 32**0.5, truth) < BIAS_T
    assert bias_t(truth + noise + 10 / 32**0.5, truth) > BIAS_T
    assert bias_t(truth.expand(32, -1).clone(), truth) < 1e-12  # a deterministic estimator


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_checks_pass_on_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--tasks", "mlp-mnist1d", "--steps", "3"]) == 0, capsys.readouterr().out
