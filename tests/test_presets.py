"""Every shipped preset resolves and runs end to end (paper presets on stand-in files)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from estimators import make_estimator, registry
from measurements.budget import budget
from measurements.studies import get_study
from measurements.study import study_name
from measurements.train import Learner
from reports import build_reports
from runners.presets import grid_specs, load_preset, preset_names
from runners.sweep import main
from tasks import get_task
from tasks.data.splits import DataSource
from tests.preset_text import preset_text
from tests.stand_in_data import write_all


def test_quick_is_every_registered_estimator_on_the_embedded_tasks() -> None:
    quick = load_preset("quick")
    assert set(quick.tasks) == {"mlp-mnist1d", "bagnet-digits", "vit-digits"}
    assert set(quick.estimators) == set(registry.shipped_names())
    assert all(registry.get(n).__module__.startswith("estimators.") for n in quick.estimators)
    assert set(quick.measure) == {"quality", "cost", "train", "scaling"} and quick.seeds == 1
    assert quick.scaling == {"mlp-mnist1d": {"depth": [4], "width": [128, 256]}}
    assert not quick.tune


def test_quick_bounds_training_by_steps_per_task() -> None:
    """Each embedded task gets its own step budget (at most its own); a task the `[steps]` table
    does not name keeps its own, and `--steps N` still replaces every task's."""
    quick = load_preset("quick")
    assert isinstance(quick.steps, dict) and set(quick.steps) == set(quick.tasks)
    for name in quick.tasks:
        task = get_task(name)
        assert budget(task, quick.steps, quick.seconds).steps == quick.steps[name] <= task.steps
    wide = get_task("mlp-mnist1d:width=512")
    assert budget(wide, quick.steps).steps == wide.steps and budget(wide, 2).steps == 2


@pytest.mark.parametrize("name", preset_names())
def test_preset_names_valid_tasks_and_estimators(name: str) -> None:
    preset = load_preset(name)
    for group in preset.also:
        for task in group.tasks:
            get_task(task)
        for spec in group.estimators:
            make_estimator(spec)
    for spec in preset.studies:
        study_name_, options = study_name(spec)
        get_study(study_name_).configure(options)
    for task in preset.tasks:
        get_task(task)
    assert preset.estimators and preset.seeds >= 1 and preset.draws >= 2


def test_grids_add_one_spec_per_point_and_full_holds_the_issue_grids() -> None:
    assert grid_specs({"sparse-vjp": {"sketch": ["uniform", "rank"], "keep": [0.5, 0.1]}}) == [
        "sparse-vjp:sketch=uniform,keep=0.5", "sparse-vjp:sketch=uniform,keep=0.1",
        "sparse-vjp:sketch=rank,keep=0.5", "sparse-vjp:sketch=rank,keep=0.1",
    ]  # fmt: skip
    specs = {make_estimator(s).spec for s in load_preset("full").estimators}
    swept = {  # estimator -> the parameter the issue asks the full preset to sweep
        "fg-wperp": "k", "svd-subspace": "k", "sparse-vjp": "keep", "cv-predicted": "fraction"
    }  # fmt: skip
    for name, key in swept.items():
        values = {make_estimator(s).config[key] for s in specs if s.startswith(name + ":")}
        assert len(values) >= 3, (name, values)
    sketches = {make_estimator(s).config["sketch"] for s in specs if s.startswith("sparse-vjp:")}
    assert {"uniform", "minvar", "rank"} <= sketches  # and the default's (outer)


@pytest.mark.parametrize("name", [n for n in preset_names() if n.startswith("paper-")])
def test_paper_preset_tasks_load_their_data_and_train_a_step(name: str, tmp_path: Path) -> None:
    """Every task of a paper preset reads its stand-in files and takes one backprop step."""
    write_all(tmp_path / "data")
    for spec in load_preset(name).tasks:
        task = get_task(spec)
        data = task.load(DataSource(tmp_path / "data"))
        learner = Learner.create(task, make_estimator("backprop"), 0, task.lr, torch.device("cpu"))
        before = [p.detach().clone() for p in learner.model.parameters()]
        learner.step((data.x_train[:8], data.y_train[:8]), torch.Generator().manual_seed(0))
        after = list(learner.model.parameters())
        assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True)), spec


@pytest.mark.parametrize("name", preset_names())
def test_preset_runs_end_to_end(name: str, tmp_path: Path) -> None:
    """Training only, budgets cut to 2 steps, every estimator setting of the preset (its grids
    included) with tuning as the preset says, on the preset's first task (stand-in MNIST /
    CIFAR-10 files where needed); the other tasks load and step in the test above.

    Quality and cost cells are exercised by tests/test_measurements.py; here the point is that
    every estimator setting a preset names builds, trains and writes its rows.
    """
    write_all(tmp_path / "data")
    out = tmp_path / "out"
    preset = load_preset(name)
    args = ["--preset", name, "--tasks", preset.tasks[0], "--steps", "2", "--seeds", "1",
            "--measure", "train", "--data-root", str(tmp_path / "data"), "--out", str(out),
            "--no-reports"]  # fmt: skip
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    failed = {k: c["error"] for k, c in manifest["cells"].items() if c["status"] != "done"}
    assert not failed
    train = pd.read_csv(out / "train.csv")
    assert set(train["task"]) == {get_task(preset.tasks[0]).name}
    specs = {make_estimator(s) for s in preset.estimators}
    assert set(zip(train["estimator"], train["params"], strict=True)) == {
        (e.name, e.params_str) for e in specs
    }


CLUSTER_PRESET = (
    preset_text("a cluster's", "quality")
    + """executor = "slurm"

[slurm]
partition = "gpu"
gpus = 1
cpus = 8
time = 240
parallelism = 16
option = ["account=proj", "exclusive"]
"""
)


def test_a_preset_slurm_table_sets_the_slurm_flags_and_flags_win(tmp_path: Path) -> None:
    """Every `[slurm]` key reaches the executor's options under its flag's name; a flag given
    replaces the preset's value (cpus, executor), one not given keeps it."""
    pytest.importorskip("submitit")
    from runners.executors import SlurmExecutor, from_args, with_preset
    from runners.sweep import parser

    path = tmp_path / "cluster.toml"
    path.write_text(CLUSTER_PRESET)
    preset = load_preset(str(path))
    args = parser().parse_args(["--preset", str(path), "--slurm-cpus", "4"])
    executor = from_args(with_preset(args, preset), tmp_path / "r", {})
    assert isinstance(executor, SlurmExecutor)
    options = executor.options
    assert (options.partition, options.gpus, options.cpus) == ("gpu", 1, 4)
    assert (options.minutes, options.parallelism) == (240, 16)
    assert options.sbatch == {"account": "proj", "exclusive": True}
    pool = parser().parse_args(["--preset", str(path), "--executor", "pool", "--jobs", "3"])
    assert from_args(with_preset(pool, preset), tmp_path / "r", {}).jobs == 3


def test_preset_executor_and_jobs_run_the_pool(tmp_path: Path) -> None:
    path = tmp_path / "pool.toml"
    path.write_text(CLUSTER_PRESET.replace('"slurm"', '"pool"\njobs = 2'))
    out = tmp_path / "out"
    assert main(["--preset", str(path), "--steps", "10", "--out", str(out), "--no-reports"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["environment"]["executor"] == "pool:2"
    assert {c["runner"] for c in manifest["cells"].values()} == {"pool:2"}


EXTRAS_PRESET = (
    preset_text("a cross, a group beyond it and a study")
    + """studies = ["wperp-overlap:widths=8,steps=2,batch=16,max_k=4"]

[seconds]
mlp-diabetes = 30
mlp-breast-cancer = 0.001

[[also]]
tasks = ["mlp-breast-cancer"]
estimators = ["backprop"]
measure = ["train"]
grids = { sparse-vjp = { keep = [0.5] } }

[[also]]
tasks = ["mlp-diabetes"]
measure = ["quality"]
draws = 6
grids = { sparse-vjp = { keep = [0.5] } }
"""
)


def test_also_groups_seconds_by_task_and_studies_run_in_one_sweep(tmp_path: Path) -> None:
    """An `[[also]]` group adds its own cross (its grids included; its quality cells at its own
    draws), `[seconds]` caps each task by name, the study writes its table into the folder, and
    a resume runs nothing again."""
    path = tmp_path / "extras.toml"
    path.write_text(EXTRAS_PRESET)
    out = tmp_path / "out"
    assert main(["--preset", str(path), "--steps", "50", "--out", str(out), "--no-reports"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert {k: c["status"] for k, c in manifest["cells"].items()} == dict.fromkeys([
        "train/mlp-diabetes/backprop/seed=0", "train/mlp-breast-cancer/backprop/seed=0",
        f"train/mlp-breast-cancer/{make_estimator('sparse-vjp:keep=0.5').spec}/seed=0",
        f"quality/mlp-diabetes/{make_estimator('sparse-vjp:keep=0.5').spec}/seed=0",
        "study/wperp-overlap:widths=8,steps=2,batch=16,max_k=4"], "done")  # fmt: skip
    assert manifest["tasks"]["mlp-breast-cancer"]["seconds"] == 0.001
    train = pd.read_csv(out / "train.csv")
    steps = train.groupby("task")["step"].max()
    assert steps["mlp-diabetes"] == 50 and steps["mlp-breast-cancer"] < 50  # capped by its time
    assert set(pd.read_csv(out / "quality.csv")["draws"]) == {6}  # the group's, not the 4
    overlap = pd.read_csv(out / "wperp_overlap.csv")
    assert set(overlap["width"]) == {8} and "cell" not in overlap.columns
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(["--resume", "--out", str(out), "--no-reports"]) == 0
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    after.pop("manifest.json")
    index = build_reports(out, tmp_path / "report").read_text()
    assert "- also (an `[[also]]` group): mlp-diabetes × sparse-vjp: quality (6 draws per " in index
    assert "- studies: wperp-overlap:widths=8,steps=2,batch=16,max_k=4." in index
    assert after == {k: v for k, v in before.items() if k != "manifest.json"}


def test_tasks_estimators_or_measure_flags_drop_the_groups_and_studies(tmp_path: Path) -> None:
    from runners.sweep import first_stage, parser, resolve, second_stage

    path = tmp_path / "extras.toml"
    path.write_text(EXTRAS_PRESET)
    whole = resolve(parser().parse_args(["--preset", str(path)]))
    assert len(whole.also) == 2 and len(whole.studies) == 1
    assert len(first_stage(whole) + second_stage(whole, {})) == 5
    for flag in (["--tasks", "mlp-diabetes"], ["--estimators", "backprop"], ["--measure", "train"]):
        config = resolve(parser().parse_args(["--preset", str(path), *flag]))
        assert config.also == () and config.studies == ()
        assert [c.key for c in first_stage(config) + second_stage(config, {})] == [
            "train/mlp-diabetes/backprop/seed=0"
        ]


OPTIONAL_PRESET = (
    preset_text()
    + """
[[also]]
tasks = ["mlp-mnist", "mlp-breast-cancer"]
estimators = ["backprop"]
measure = ["train"]
optional = true
"""
)


def test_an_optional_group_leaves_out_tasks_whose_data_is_absent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --data-root the MNIST task of an optional group is left out (one line says so)
    and the embedded one stays; with the (stand-in) files under --data-root both run; a group
    that is not optional stops the sweep with the usual one-line data error."""
    from runners.sweep import parser, resolve, second_stage

    path = tmp_path / "optional.toml"
    path.write_text(OPTIONAL_PRESET)
    bare = resolve(parser().parse_args(["--preset", str(path)]))
    assert bare.also[0].tasks == ("mlp-breast-cancer",)
    assert (
        "left out (data absent; an optional [[also]] group): mlp-mnist" in capsys.readouterr().out
    )
    write_all(tmp_path / "data")
    given = resolve(parser().parse_args(["--preset", str(path), "--data-root",
                                         str(tmp_path / "data")]))  # fmt: skip
    assert given.also[0].tasks == ("mlp-mnist", "mlp-breast-cancer")
    assert {c.task for c in second_stage(given, {})} == {"mlp-diabetes", "mlp-mnist",
                                                         "mlp-breast-cancer"}  # fmt: skip
    path.write_text(OPTIONAL_PRESET.replace("optional = true\n", ""))
    assert main(["--preset", str(path), "--out", str(tmp_path / "out"), "--no-reports"]) == 2
    assert capsys.readouterr().err == (
        "error: MNIST needs --data-root (a folder that holds it, or where to put it with "
        "--download)\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_pair_named_twice_runs_each_measurement_at_its_groups_seeds_and_draws(
    tmp_path: Path,
) -> None:
    """backprop on mlp-diabetes: trained at the cross's 1 seed, measured for quality at the
    group's 3 seeds and 5 draws; the group's train seeds (2) raise the cross's for training."""
    from runners.sweep import first_stage, parser, resolve, second_stage

    path = tmp_path / "seeds.toml"
    path.write_text(preset_text() + '[[also]]\ntasks = ["mlp-diabetes"]\nestimators = '
                    '["backprop"]\nmeasure = ["quality"]\nseeds = 3\ndraws = 5\n')  # fmt: skip
    config = resolve(parser().parse_args(["--preset", str(path)]))
    cells = first_stage(config) + second_stage(config, {})
    assert [(c.measure, c.seed, c.draws) for c in cells] == [
        ("quality", 0, 5), ("quality", 1, 5), ("quality", 2, 5), ("train", 0, None)
    ]  # fmt: skip
    path.write_text(path.read_text().replace('["quality"]', '["train"]').replace("3", "2"))
    config = resolve(parser().parse_args(["--preset", str(path)]))
    assert [c.key for c in second_stage(config, {})] == [
        "train/mlp-diabetes/backprop/seed=0", "train/mlp-diabetes/backprop/seed=1"
    ]  # fmt: skip
