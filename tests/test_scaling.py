"""The scaling measurement (a cost cell per estimator and model size) and its report figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from measurements.context import Context
from measurements.scaling import ScalingError, family_of, size_axis, sized_tasks
from measurements.schema import COLUMNS
from reports import scaling as report
from reports.build import style_of
from reports.load import Results
from runners.cells import Cell, run_cell
from runners.presets import load_preset
from tasks.data import DataSource


def test_a_family_expands_to_one_canonical_task_per_size_smallest_first() -> None:
    grid = {"mlp-mnist1d": {"depth": [4], "width": [512, 16]}, "vit-digits": {"dim": [32]}}
    assert sized_tasks(grid) == [("mlp-mnist1d:depth=4,width=16", "width"),
                                 ("mlp-mnist1d:depth=4,width=512", "width"),
                                 ("vit-digits:dim=32", "dim")]  # fmt: skip
    assert family_of("mlp-mnist1d:depth=4,width=16", "width") == ("mlp-mnist1d:depth=4", 16.0)
    assert family_of("vit-digits:dim=32", "dim") == ("vit-digits", 32.0)
    assert isinstance(family_of("vit-digits:dim=32", "dim")[1], int)  # written "32", not "32.0"


TWO_AXES = {"depth": [3, 4], "width": [16, 32]}
NO_AXIS = {"depth": [3], "width": [16]}


@pytest.mark.parametrize("options", [TWO_AXES, NO_AXIS])
def test_a_family_must_vary_exactly_one_option(options: dict) -> None:
    with pytest.raises(ScalingError, match="one model option"):
        size_axis(options)


def test_the_paper_preset_covers_the_sizes_the_issue_names() -> None:
    preset = load_preset("paper-scaling")
    assert preset.measure == ("scaling",) and preset.scaling is not None
    sizes = {task: axis for task, axis in sized_tasks(preset.scaling)}
    assert "mlp-mnist1d:depth=4,width=128" in sizes and "mlp-mnist1d:depth=4,width=4096" in sizes
    assert "vit-digits:dim=64" in sizes and "vit-digits:dim=512" in sizes


def test_a_scaling_cell_is_a_cost_row_with_its_family_and_size(tmp_path: Path) -> None:
    cell = Cell("mlp-mnist1d:depth=4,width=16", "backprop-subbatch", 0, "scaling", axis="width")
    assert cell.key == "scaling/mlp-mnist1d:depth=4,width=16/backprop-subbatch/step"
    ctx = Context(torch.device("cpu"), DataSource(), tmp_path)
    row = run_cell(cell, ctx)["scaling.csv"][0]
    assert list(row) == list(COLUMNS["scaling.csv"])
    assert (row["family"], row["axis"], row["size"]) == ("mlp-mnist1d:depth=4", "width", 16.0)
    assert row["flop_ratio"] == pytest.approx(0.25, rel=0.02)  # 32 of 128 examples
    assert row["time_ratio_lo"] <= row["time_ratio"] <= row["time_ratio_hi"]


def _rows(time: list[float], flops: float, noisy: list[bool], est: str = "sparse-vjp") -> list:
    return [{"family": "mlp-mnist1d:depth=4", "axis": "width", "size": size, "task": "t",
             "estimator": est, "params": "keep=0.25", "flop_ratio": flops, "time_ratio": t,
             "time_ratio_lo": 0.95 * t, "time_ratio_hi": 1.05 * t, "memory_ratio": 1.0,
             "noisy": n}
            for size, t, n in zip((128, 512, 2048, 4096), time, noisy, strict=True)]  # fmt: skip


def _findings(tmp_path: Path, rows: list) -> tuple[list[str], str]:
    frame = pd.DataFrame(rows)
    res = Results(tmp_path, {"config": {}}, {"scaling.csv": frame})
    (section,) = report.build(res, style_of(res), tmp_path)
    assert (tmp_path / "figures" / "scaling.png").exists()
    return section.findings, (tmp_path / "tables" / "scaling.md").read_text()


def test_thresholds_are_the_smallest_steady_sizes_whose_interval_clears_the_bound(
    tmp_path: Path,
) -> None:
    # FLOP ratio 0.5: within 1.25x needs time_hi <= 0.625 (time <= 0.595); break-even time_hi < 1.
    # 512 would pass both but is noisy, so 2048 is where both are first shown.
    rows = _rows([1.4, 0.5, 0.58, 0.55], 0.5, [False, True, False, False])
    findings, table = _findings(tmp_path, rows)
    assert "within 1.25× its FLOP ratio from width=2048" in findings[0]
    assert "faster than backprop from width=2048" in findings[0]
    assert "| width=2048 " in table


def test_not_reached_and_all_noisy_are_said_so(tmp_path: Path) -> None:
    rows = _rows([1.4, 1.3, 0.9, 0.7], 0.5, [False] * 4) + _rows(
        [0.3, 0.3, 0.3, 0.3], 0.25, [True] * 4, est="backprop-subbatch"
    )
    findings, _ = _findings(tmp_path, rows)
    sparse = next(f for f in findings if "sparse-vjp" in f)
    assert "no steady cell has its time ratio within 1.25×" in sparse
    assert "faster than backprop from width=2048" in sparse  # 0.9 x 1.05 < 1
    assert "(width=4096) its time ratio is 0.7 [0.665, 0.735]" in sparse
    sub = next(f for f in findings if "backprop-subbatch" in f)
    assert "every cell is marked noisy, so no size is a finding" in sub


def test_no_scaling_rows_is_a_skip_line(tmp_path: Path) -> None:
    res = Results(tmp_path, {"config": {}}, {})
    (section,) = report.build(res, style_of(res), tmp_path)
    assert section.skipped is not None and "paper-scaling" in section.skipped
