"""The measurement layer moved the protocol, not the numbers.

`tests/data/before_layer/` holds the mlp-mnist1d rows of
`python -m runners.sweep --seconds 0 --steps 60 --measure quality,train` (preset `quick`: every
shipped estimator at its defaults, 16 draws) as the code wrote them before the measurement layer
existed (commit bb8ab42; `train.csv` without its wall-clock `seconds`). The same sweep today must
give the same rows: FLOPs, steps and statuses exactly, every statistic to 1e-9 relative (the
runs are seeded and deterministic on one machine; the tolerance only absorbs float formatting).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runners.sweep import main

BEFORE = Path(__file__).parent / "data" / "before_layer"


@pytest.fixture(scope="module")
def after(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("after")
    argv = ["--tasks", "mlp-mnist1d", "--seconds", "0", "--steps", "60", "--measure",
            "quality,train", "--out", str(out / "r"), "--no-reports"]  # fmt: skip
    assert main(argv) == 0
    return out / "r"


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=["nan"], dtype={"params": str})


@pytest.mark.parametrize("file", ["quality.csv", "train.csv"])
def test_rows_equal_those_before_the_measurement_layer(file: str, after: Path) -> None:
    before = _read(BEFORE / file)
    now = _read(after / file).drop(columns=["seconds"], errors="ignore")
    assert list(now.columns) == list(before.columns) and len(now) == len(before)
    numeric = before.select_dtypes("number").columns
    exact = [c for c in before.columns if c not in numeric or c in ("flops", "step", "draws")]
    pd.testing.assert_frame_equal(now[exact], before[exact])
    close = [c for c in numeric if c not in exact]
    np.testing.assert_allclose(now[close].to_numpy(float), before[close].to_numpy(float),
                               rtol=1e-9, atol=0, equal_nan=True)  # fmt: skip
