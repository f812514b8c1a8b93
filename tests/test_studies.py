"""Every study runs end to end at its smoke size: rows in the schema's columns, a report section.

This is the test suite's run of each former benchmark script (two steps, tiny sizes); the
studies' own test files check what their numbers must satisfy.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from measurements.schema import STUDY_COLUMNS
from measurements.studies import MODULES, get_study
from measurements.study import StudyError
from reports.build import build_reports
from runners.study import main, run

CPU = torch.device("cpu")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_smoke_run_writes_schema_rows_and_a_report(name: str, tmp_path: Path) -> None:
    study = get_study(name)
    counts = run(name, tmp_path, CPU, smoke=True)
    assert set(counts) == set(study.files)
    for file in study.files:
        df = pd.read_csv(tmp_path / file)
        assert tuple(df.columns) == STUDY_COLUMNS[file]
        assert len(df) == counts[file] >= 1
    index = build_reports(tmp_path, tmp_path / "report").read_text()
    for file in study.files:  # each file is drawn by a section, which is not skipped
        assert file in index
        assert not any(file in line and "Skipped" in line for line in index.splitlines())


def test_settings_round_trip_through_their_spec() -> None:
    study = get_study("lowrank-layer")
    settings = study.configure("sizes=64+32+128+16,ranks=4,batch=8")
    assert settings.sizes == (64, 32, 128, 16) and settings.ranks == (4,) and settings.batch == 8
    assert study.configure(study.describe(settings).partition(":")[2]) == settings


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-study"], "unknown study 'no-such-study'; valid:"),
        (["lowrank-layer:batch=x"], "lowrank-layer: batch must be int, got 'x'"),
        (["lowrank-layer:widht=3"], "lowrank-layer: unknown setting 'widht'; valid:"),
        (["lowrank-layer:batch"], "lowrank-layer: settings must be written key=value"),
        (["lowrank-layer:batch=2", "--smoke"], "--smoke runs the study's own tiny settings"),
    ],
)
def test_bad_input_is_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_study_joins_a_sweep_folder_and_refuses_a_foreign_one(tmp_path: Path) -> None:
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a results folder"):
        run("lowrank-layer", tmp_path / "foreign", CPU, smoke=True)
    run("lowrank-layer", tmp_path / "r", CPU, smoke=True)
    first = pd.read_csv(tmp_path / "r" / "lowrank_layer.csv")
    run("lowrank-layer", tmp_path / "r", CPU, smoke=True)  # a rerun replaces, never duplicates
    assert len(pd.read_csv(tmp_path / "r" / "lowrank_layer.csv")) == len(first)


def test_unknown_study_error_type() -> None:
    with pytest.raises(StudyError):
        get_study("nope")
