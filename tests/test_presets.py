"""Every shipped preset resolves and runs end to end (paper presets on stand-in files)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from estimators import registry
from runners.presets import load_preset, preset_names
from runners.sweep import main
from tasks import get_task
from tests.stand_in_data import write_all


def test_quick_is_every_registered_estimator_on_the_embedded_tasks() -> None:
    quick = load_preset("quick")
    assert set(quick.tasks) == {"mlp-mnist1d", "bagnet-digits", "vit-digits"}
    assert set(quick.estimators) == set(registry.shipped_names())
    assert all(registry.get(n).__module__.startswith("estimators.") for n in quick.estimators)
    assert set(quick.measure) == {"quality", "cost", "train"} and quick.seeds == 1
    assert not quick.tune


@pytest.mark.parametrize("name", preset_names())
def test_preset_names_valid_tasks_and_estimators(name: str) -> None:
    preset = load_preset(name)
    for task in preset.tasks:
        get_task(task)
    assert preset.estimators and preset.seeds >= 1 and preset.draws >= 2


@pytest.mark.parametrize("name", preset_names())
def test_preset_runs_end_to_end(name: str, tmp_path: Path) -> None:
    """Training only, budgets cut to 2 steps, on stand-in MNIST / CIFAR-10 files where needed.

    Quality and cost cells are exercised by tests/test_measurements.py; here the point is that
    every task and estimator setting a preset names builds, trains and writes its rows.
    """
    write_all(tmp_path / "data")
    out = tmp_path / "out"
    args = ["--preset", name, "--steps", "2", "--seeds", "1", "--measure", "train",
            "--data-root", str(tmp_path / "data"), "--out", str(out), "--no-reports"]  # fmt: skip
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    failed = {k: c["error"] for k, c in manifest["cells"].items() if c["status"] != "done"}
    assert not failed
    preset = load_preset(name)
    train = pd.read_csv(out / "train.csv")
    assert set(train["task"]) == {get_task(t).name for t in preset.tasks}
