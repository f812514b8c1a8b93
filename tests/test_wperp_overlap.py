"""The W-perp overlap study (Wang et al., Fig. 1) and its report figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from measurements.schema import STUDY_COLUMNS
from measurements.studies.wperp_overlap import FILE, STUDY, overlaps
from reports.load import Results
from reports.style import Style
from reports.wperp_overlap import build
from runners.study import run
from tasks.models.mlp import MLP
from tasks.task import cross_entropy

CPU = torch.device("cpu")


def tiny() -> tuple[MLP, Tensor, Tensor]:
    torch.manual_seed(0)
    model = MLP(6, 3, width=5, depth=2)
    return model, torch.randn(32, 6), torch.randint(0, 3, (32,))


def test_overlap_is_one_at_full_rank_and_nondecreasing_in_k() -> None:
    model, x, y = tiny()
    found = overlaps(model, cross_entropy, x, y, k=7)  # K > width 5: past every layer's rank
    assert set(found) == {"hidden.0", "hidden.1"}
    for share in found.values():
        assert share.shape[1] == 7 and len(share) > 0
        assert (share.diff(dim=1) >= -1e-12).all()
        assert torch.allclose(share[:, -1], torch.ones(len(share), dtype=share.dtype))
        assert (share[:, 0] < 1 - 1e-6).any()  # not trivially 1: one direction misses some


def test_first_layer_matches_a_hand_svd() -> None:
    model, x, y = tiny()
    p = dict(model.named_parameters())
    w1 = p["hidden.1.weight"]
    s0 = x @ p["hidden.0.weight"].T + p["hidden.0.bias"]
    s1 = torch.relu(s0) @ w1.T + p["hidden.1.bias"]
    logits = torch.relu(s1) @ p["head.weight"].T + p["head.bias"]
    loss = cross_entropy(logits, y).sum()
    (g,) = torch.autograd.grad(loss, s0)  # (B, 5): dl_b/ds_0 per example
    g, slope = g.double(), (s0 > 0).double()
    expected = []
    for b in range(len(x)):
        vh = torch.linalg.svd(w1.detach().double() * slope[b], full_matrices=False).Vh
        expected.append((vh @ g[b]).square().cumsum(0) / g[b].square().sum())
    hand = torch.stack(expected)[g.square().sum(1) > 0]  # (kept, 5)
    found = overlaps(model, cross_entropy, x, y, k=5)["hidden.0"]
    torch.testing.assert_close(found, hand, atol=1e-6, rtol=1e-6)


def test_smoke_study_writes_schema_rows(tmp_path: Path) -> None:
    counts = run(STUDY.name, tmp_path, CPU, smoke=True)
    rows = pd.read_csv(tmp_path / FILE)
    assert tuple(rows.columns) == STUDY_COLUMNS[FILE]
    smoke = STUDY.smoke
    assert counts[FILE] == len(rows) == len(smoke.widths) * 3 * smoke.max_k
    assert rows["overlap"].between(0, 1 + 1e-9).all()
    assert (rows["lo"] <= rows["overlap"] + 1e-12).all()
    assert (rows["hi"] >= rows["overlap"] - 1e-12).all()


def hand_table() -> pd.DataFrame:
    rows = []
    for width, scale in ((128, 3.0), (512, 6.0)):
        for i, layer in enumerate(("hidden.0", "hidden.1")):
            for k in range(1, 13):
                value = 1.0 if i else min(1.0, k / (scale + 4))
                rows.append({"task": "mlp-mnist1d", "width": width, "steps": 300,
                             "layer": layer, "k": k, "overlap": value, "lo": value - 0.05,
                             "hi": min(1.0, value + 0.05), "examples": 64})  # fmt: skip
    return pd.DataFrame(rows, columns=STUDY_COLUMNS[FILE])


def test_report_draws_the_figure_and_says_where_each_layer_reaches(tmp_path: Path) -> None:
    res = Results(tmp_path, {"config": {}}, {}, {FILE: hand_table()})
    (section,) = build(res, Style.of([]), tmp_path)
    assert section.skipped is None
    assert section.files == ["figures/wperp-overlap.png", "figures/wperp-overlap.svg"]
    svg = (tmp_path / "figures" / "wperp-overlap.svg").read_text()
    assert "width 128" in svg and "width 512" in svg and "hidden.1" in svg
    text = " ".join(section.findings)
    # width 128: k/7 >= 0.9 first at k = 7 (hi: k/7 + 0.05 at 5.95 -> 6; lo at 6.65 -> 7)
    assert "width 128" in text and "hidden.0 at k = 7 [6, 7]" in text
    # width 512: k/10 >= 0.9 at k = 9 (hi at 8.5 -> 9; lo at 9.5 -> 10)
    assert "hidden.0 at k = 9 [9, 10]" in text and "hidden.1 at k = 1 [1, 1]" in text
    assert "on 4 of 4 layer-width pairs" in text


def test_report_says_when_a_layer_does_not_reach_and_skips_without_rows(tmp_path: Path) -> None:
    table = hand_table()
    table.loc[table["layer"] == "hidden.0", ["overlap", "lo", "hi"]] = (0.5, 0.4, 0.6)
    (section,) = build(Results(tmp_path, {"config": {}}, {}, {FILE: table}), Style.of([]), tmp_path)
    assert "hidden.0 does not by k = 12 (0.5 there)" in " ".join(section.findings)
    (empty,) = build(Results(tmp_path, {"config": {}}, {}), Style.of([]), tmp_path)
    assert empty.skipped is not None and "wperp-overlap" in empty.skipped
