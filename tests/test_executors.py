"""Executors beyond one process: the pool and Slurm (submitit) executors give the local one's
tables; timed cells run alone; worker contexts are picklable; workers never race on checkpoints."""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from measurements.context import Context
from runners.cells import Cell
from runners.executors import (
    CellJob,
    PoolExecutor,
    SlurmExecutor,
    SlurmOptions,
    WorkerSpec,
    measure,
)
from runners.sweep import main
from tasks.data import DataSource

TINY = ["--tasks", "mlp-diabetes", "--estimators", "backprop", "fg-weight", "--seeds", "2",
        "--steps", "20", "--draws", "4", "--measure", "quality,train", "--seconds", "0",
        "--no-reports"]  # fmt: skip
TABLES = ("quality.csv", "train.csv", "diagnostics.csv")


def tables(out: Path) -> dict[str, pd.DataFrame]:
    """Each table without its timing column, rows sorted by their text columns."""
    found = {}
    for file in TABLES:
        df = pd.read_csv(out / file).drop(columns=["seconds"], errors="ignore")
        keys = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])] + ["seed"]
        found[file] = df.sort_values(keys, kind="stable").reset_index(drop=True)
    return found


def assert_same_tables(a: Path, b: Path) -> None:
    """Same rows in every table. Training runs in the driver either way: bit-equal. Quality may
    run under another torch thread count (cores // jobs), whose float32 reductions round
    differently: equal to a relative 1e-7 (seen: bit-equal on mlp-diabetes, 5e-9 on
    mlp-mnist1d)."""
    left, right = tables(a), tables(b)
    for file in TABLES:
        rtol = 1e-7 if file == "quality.csv" else 0.0
        pd.testing.assert_frame_equal(left[file], right[file], check_exact=not rtol, rtol=rtol)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sweep run by the local executor."""
    out = tmp_path_factory.mktemp("local") / "r"
    assert main([*TINY, "--out", str(out)]) == 0
    return out


def test_pool_gives_the_local_tables_and_records_where_cells_ran(local: Path, tmp_path: Path):
    out = tmp_path / "pool"
    assert main([*TINY, "--executor", "pool", "--jobs", "2", "--out", str(out)]) == 0
    assert_same_tables(local, out)
    cells = json.loads((out / "manifest.json").read_text())["cells"]
    assert len(cells) == 8 and {c["status"] for c in cells.values()} == {"done"}
    runners = {key.split("/")[0]: set() for key in cells}
    for key, c in cells.items():
        runners[key.split("/")[0]].add(c["runner"])
    assert runners == {"quality": {"pool:2"}, "train": {"local"}}  # timed cells ran alone
    assert not list((out / "checkpoints").glob("*.tmp"))


def test_slurm_debug_cluster_gives_the_local_tables(local: Path, tmp_path: Path) -> None:
    """submitit's `debug` cluster runs each array task in this process, through the same path."""
    pytest.importorskip("submitit")
    out = tmp_path / "debug"
    args = ["--executor", "slurm", "--slurm-cluster", "debug", "--slurm-cpus", "1"]
    assert main([*TINY, *args, "--out", str(out)]) == 0
    assert_same_tables(local, out)
    cells = json.loads((out / "manifest.json").read_text())["cells"]
    assert {c["runner"] for c in cells.values()} == {"slurm"}
    assert (tmp_path / "debug.slurm").is_dir() and not (out / ".submitit").exists()


def test_slurm_local_cluster_runs_tasks_in_their_own_processes(local: Path, tmp_path: Path):
    """submitit's `local` cluster: each task a subprocess that unpickles the cell and its spec."""
    pytest.importorskip("submitit")
    out = tmp_path / "sub"
    args = ["--executor", "slurm", "--slurm-cluster", "local", "--slurm-cpus", "1",
            "--slurm-folder", str(tmp_path / "jobs")]  # fmt: skip
    assert main([*TINY, *args, "--out", str(out)]) == 0
    assert_same_tables(local, out)
    assert list((tmp_path / "jobs").glob("*_result.pkl"))


def test_sbatch_script_asks_for_the_requested_resources(tmp_path: Path) -> None:
    """The script submitit would submit, written under submitit's own mocked Slurm commands."""
    pytest.importorskip("submitit")
    from submitit.slurm.test_slurm import mocked_slurm

    options = SlurmOptions(str(tmp_path / "jobs"), None, "gpu-long", 2, 8, 90, 2,
                           {"account": "proj42", "exclusive": True})  # fmt: skip
    ctx = Context(torch.device("cpu"), DataSource(), tmp_path / "r", 20, 4)
    spec = WorkerSpec.of(ctx, options.cpus, {})
    cells = [Cell("mlp-diabetes", "backprop", s, "quality") for s in range(3)]
    with mocked_slurm():
        jobs = SlurmExecutor(options).executor().map_array(CellJob(), [spec] * 3, cells)
    script = jobs[0].paths.submission_file.read_text()
    for line in ("--partition=gpu-long", "--gpus-per-node=2", "--cpus-per-task=8",
                 "--time=90", "--array=0-2%2", "--account=proj42", "--exclusive"):  # fmt: skip
        assert f"#SBATCH {line}\n" in script, line


def test_a_requeued_slurm_task_reruns_its_cell(tmp_path: Path) -> None:
    """Preempted or out of time, submitit calls `checkpoint`: the same cell is resubmitted, and
    rerunning it gives the same rows."""
    pytest.importorskip("submitit")
    ctx = Context(torch.device("cpu"), DataSource(), tmp_path, 10, 4)
    spec = WorkerSpec.of(ctx, 1, {})
    cell = Cell("mlp-diabetes", "backprop", 0, "train")
    again = CellJob().checkpoint(spec, cell)
    assert isinstance(again.function, CellJob) and again.args == (spec, cell)

    def untimed(rows: dict[str, list[dict[str, object]]]) -> dict[str, list[dict[str, object]]]:
        return {
            f: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
            for f, rs in rows.items()
        }

    rerun = again.result()
    assert rerun.error is None and rerun.rows["train.csv"]
    assert untimed(rerun.rows) == untimed(measure(cell, spec.context(), "x").rows)


def test_worker_spec_crosses_a_process_boundary(tmp_path: Path) -> None:
    ctx = Context(torch.device("cpu"), DataSource(tmp_path / "data", True), tmp_path, {"a": 3}, 8,
                  2.5, on_step=print)  # fmt: skip
    spec = WorkerSpec.of(ctx, 3, {"backprop": "estimators.backprop:Backprop"})
    back = pickle.loads(pickle.dumps(spec))
    assert back == spec and back.data_threads == torch.get_num_threads()
    threads = torch.get_num_threads()
    try:
        rebuilt = back.context()
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    assert (rebuilt.device, rebuilt.source, rebuilt.folder) == (ctx.device, ctx.source, ctx.folder)
    assert (rebuilt.steps, rebuilt.draws, rebuilt.seconds) == ({"a": 3}, 8, 2.5)
    assert rebuilt.on_step is None


def test_pool_threads_share_out_the_cores() -> None:
    assert PoolExecutor(1).threads >= 1
    assert PoolExecutor(10_000).threads == 1
    with pytest.raises(ValueError, match="--jobs must be >= 1"):
        PoolExecutor(0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "pool", "--jobs", "0"], "--jobs must be >= 1, got 0"),
        (["--jobs", "2"], "--jobs applies to --executor pool only"),
        (["--executor", "slurm", "--slurm-option", "=x"], "--slurm-option takes KEY=VALUE or KEY"),
        (["--executor", "slurm", "--slurm-time", "0"], "--slurm-time must be >= 1"),
        (["--executor", "thread"], "invalid choice: 'thread'"),
    ],
)
def test_bad_executor_flags_are_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("submitit")
    out = tmp_path / "never"
    assert main([*TINY, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


WRITE_CHECKPOINT = """
import sys, torch
from pathlib import Path
from measurements.checkpoints import trajectory
from tasks import get_task
from tasks.data import DataSource
task = get_task("mlp-diabetes")
data = task.load(DataSource())
for _ in range(3):
    trajectory(task, 0, 20, data, torch.device("cpu"), Path(sys.argv[1]))
"""


def test_two_workers_writing_one_checkpoint_never_race(tmp_path: Path) -> None:
    """Two processes save the same checkpoint file at once, three times each: both succeed and
    the file loads (a shared temporary name would let one rename the other's half-written file,
    or fail on a vanished one)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITE_CHECKPOINT, str(tmp_path)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    [path] = (tmp_path / "checkpoints").iterdir()
    assert set(torch.load(path)) == {0, 10, 20}


def test_a_killed_pool_sweep_resumes_with_another_executor(local: Path, tmp_path: Path) -> None:
    """SIGKILL the driver of a pool sweep once a cell is done, resume it with the local
    executor: every cell once, the uninterrupted local run's numbers, no worker left behind."""
    from benchmarks.kill_resume import sweep_process

    out = tmp_path / "killed"
    proc = sweep_process(*TINY, "--executor", "pool", "--jobs", "2", "--out", str(out))
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        path = out / "manifest.json"
        cells = json.loads(path.read_text())["cells"] if path.exists() else {}
        if any(c["status"] == "done" for c in cells.values()):
            break
        time.sleep(0.1)
    found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    workers = [int(pid) for pid in found.stdout.split()]
    assert workers  # the pool's processes (quality cells run first)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "workers outlived it"
    done = json.loads((out / "manifest.json").read_text())["cells"]
    assert 0 < sum(c["status"] == "done" for c in done.values()) < len(done)
    resume = sweep_process("--resume", "--out", str(out), "--executor", "local")
    assert resume.wait(timeout=600) == 0, resume.stderr.read() if resume.stderr else ""
    assert_same_tables(local, out)
    for file in TABLES:
        df = pd.read_csv(out / file)
        assert not df.drop(columns=["seconds"], errors="ignore").duplicated().any()


def test_ten_kills_of_a_pool_sweep_each_resumed_equal_an_uninterrupted_run(
    local: Path, tmp_path: Path
) -> None:
    """Ten SIGKILLs of the driver of a `--jobs 2` pool sweep, each in the middle of a table
    write (write 1..3 of the restart, a random fraction of it: seed 0; `kill_in_writes`), while
    the other worker is still computing; each restart resumes with the pool. At the end every
    cell is done, each row is there once, and the tables are the local run's."""
    from benchmarks.kill_resume import kill_in_writes

    out, pool = tmp_path / "r", ["--executor", "pool", "--jobs", "2"]
    lines = kill_in_writes(out, TINY, 10, random.Random(0), pool)
    assert sum("killed mid-write" in line for line in lines) == 10, lines
    cells = json.loads((out / "manifest.json").read_text())["cells"]
    assert len(cells) == 8 and {c["status"] for c in cells.values()} == {"done"}
    assert {c["runner"] for k, c in cells.items() if k.startswith("quality/")} == {"pool:2"}
    for file in TABLES:
        df = pd.read_csv(out / file)
        assert not df.drop(columns=["seconds"], errors="ignore").duplicated().any(), file
    assert_same_tables(local, out)
