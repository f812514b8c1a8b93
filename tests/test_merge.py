"""`python -m runners.merge`: folders split by estimator merge into the joint sweep's tables;
mismatched settings and conflicting cells are refused with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from measurements import store as results
from runners.merge import main as merge
from runners.sweep import main as sweep

BASE = ["--tasks", "mlp-diabetes", "--seeds", "2", "--steps", "20", "--draws", "4",
        "--measure", "quality,train", "--seconds", "0", "--no-reports"]  # fmt: skip
TABLES = ("quality.csv", "train.csv", "diagnostics.csv")


def run(out: Path, *args: str) -> Path:
    assert sweep([*BASE, *args, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Sweeps of backprop, of fg-weight, and of both at once (same settings)."""
    root = tmp_path_factory.mktemp("parts")
    return (
        run(root / "a", "--estimators", "backprop"),
        run(root / "b", "--estimators", "fg-weight"),
        run(root / "both", "--estimators", "backprop", "fg-weight"),
    )


def untimed(folder: Path, file: str) -> pd.DataFrame:
    df = pd.read_csv(folder / file).drop(columns=["seconds"], errors="ignore")
    return df.sort_values(["cell", *df.columns[:6]]).reset_index(drop=True)


def test_folders_split_by_estimator_merge_into_the_joint_sweep(parts, tmp_path: Path) -> None:
    a, b, both = parts
    out = tmp_path / "merged"
    assert merge([str(out), str(a), str(b)]) == 0
    for file in TABLES:  # same cells, same numbers (training is seeded; only time differs)
        pd.testing.assert_frame_equal(untimed(out, file), untimed(both, file), check_exact=True)
    manifest = json.loads((out / "manifest.json").read_text())
    joint = json.loads((both / "manifest.json").read_text())
    assert set(manifest["cells"]) == set(joint["cells"])
    assert {c["status"] for c in manifest["cells"].values()} == {"done"}
    assert manifest["config"]["estimators"] == joint["config"]["estimators"]
    assert [m["folder"] for m in manifest["merged"]] == [str(a), str(b)]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == sorted(
        p.name for p in (a / "checkpoints").iterdir()
    )
    _, found = results.open_existing(out)  # the folder is sound: a resume has nothing to do
    assert found.sound
    assert sweep(["--resume", "--out", str(out), "--no-reports"]) == 0
    pd.testing.assert_frame_equal(untimed(out, "train.csv"), untimed(both, "train.csv"))


def test_a_cell_in_two_inputs_merges_only_when_identical(parts, tmp_path: Path, capsys) -> None:
    a, b, both = parts
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    assert merge([str(tmp_path / "ok"), str(a), str(copy), str(b)]) == 0
    assert len(pd.read_csv(tmp_path / "ok" / "train.csv")) == len(pd.read_csv(both / "train.csv"))
    # `both` ran backprop's cells again: its training rows' times differ from a's
    assert merge([str(tmp_path / "no"), str(a), str(both)]) == 2
    err = capsys.readouterr().err
    assert "cell train/mlp-diabetes/backprop/seed=0 is in both" in err and err.count("\n") == 1
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--draws", "6"], "differs from {a} in config 'draws': 6 against 4"),
        (["--steps", "30"], "differs from {a} in task mlp-diabetes's steps: 30 against 20"),
    ],
)
def test_mismatched_settings_are_refused_with_one_line(
    parts, args: list[str], message: str, tmp_path: Path, capsys
) -> None:
    a = parts[0]
    other = tmp_path / "other"
    # a training-only sweep is quickest; the configuration recorded still says its draws
    run(other, "--estimators", "fg-weight", "--measure", "train", *args)
    capsys.readouterr()
    assert merge([str(tmp_path / "m"), str(a), str(other)]) == 2
    err = capsys.readouterr().err
    assert message.format(a=a) in err and err.count("\n") == 1
    assert not (tmp_path / "m").exists()


def test_a_device_kind_mismatch_is_refused(parts, tmp_path: Path, capsys) -> None:
    a, b, _ = parts
    gpu = tmp_path / "gpu"
    shutil.copytree(b, gpu)
    manifest = json.loads((gpu / "manifest.json").read_text())
    manifest["environment"]["device"] = "cuda:0"
    (gpu / "manifest.json").write_text(json.dumps(manifest))
    assert merge([str(tmp_path / "m"), str(a), str(gpu)]) == 2
    assert "in device kind: 'cuda' against 'cpu'" in capsys.readouterr().err


def test_an_unfinished_input_or_one_input_is_refused(parts, tmp_path: Path, capsys) -> None:
    a = parts[0]
    assert merge([str(tmp_path / "m"), str(a)]) == 2
    assert "at least two" in capsys.readouterr().err
    torn = tmp_path / "torn"
    shutil.copytree(a, torn)
    text = (torn / "train.csv").read_text()
    (torn / "train.csv").write_text(text[:-5])
    assert merge([str(tmp_path / "m"), str(a), str(torn)]) == 2
    assert "finish it with --resume first" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_reports_read_several_folders_as_their_merge(parts, tmp_path: Path, capsys) -> None:
    """`python -m reports --results A B` prints the closing table of `runners.merge`'s folder of
    A and B, and refuses a mismatched pair with the merge's one line, writing nothing."""
    from reports.__main__ import main as reports

    a, b, _ = parts
    assert merge([str(tmp_path / "m"), str(a), str(b)]) == 0
    capsys.readouterr()
    assert reports(["--results", str(tmp_path / "m"), "--summary", "--no-pages"]) == 0
    want = capsys.readouterr().out
    assert reports(["--results", str(a), str(b), "--summary", "--no-pages"]) == 0
    got = capsys.readouterr().out
    assert got == want and "backprop" in got and "fg-weight" in got
    assert reports(["--results", str(a), "--summary", "--no-pages"]) == 0
    assert "fg-weight" not in capsys.readouterr().out
    gpu = tmp_path / "gpu"
    shutil.copytree(b, gpu)
    manifest = json.loads((gpu / "manifest.json").read_text())
    manifest["environment"]["device"] = "cuda:0"
    (gpu / "manifest.json").write_text(json.dumps(manifest))
    assert reports(["--results", str(a), str(gpu), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in device kind: 'cuda' against 'cpu'" in err
    assert not (tmp_path / "rep").exists()
