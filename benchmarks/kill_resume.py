"""SIGKILL a sweep at random moments, resume it each time, and compare with an uninterrupted run.

    python -m benchmarks.kill_resume [--kills 10] [--seed 1] [--work DIR]

One uninterrupted sweep (the four tabular tasks, backprop / fg-activity / sparse-vjp, 3 seeds,
step budgets only, `--seconds 0`) gives the reference and its wall time T. The same sweep is then
started in a second folder and, once its manifest is written, killed with SIGKILL after a uniform
random delay in [0, 0.05 T] (seeded); each restart is `--resume`, until `--kills` kills have
landed while cells were still pending (kills after the last cell are reported, not counted). A
last `--resume` finishes it. Checked: every cell `done`, every row present once, and every
column of train.csv, quality.csv and cost.csv equal to the reference apart from the wall-clock
ones. Prints one line per restart.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ["--tasks", "mlp-diabetes", "mlp-synthetic20", "mlp-breast-cancer", "mlp-digits-1vr",
          "--estimators", "backprop", "fg-activity", "sparse-vjp", "--seeds", "3",
          "--steps", "100", "--draws", "8", "--seconds", "0"]  # fmt: skip
# wall-clock columns (and what follows from them: intervals, A/A, re-measured pairs, the noisy
# mark) differ run to run
TIMING = ["seconds", "step_seconds", "step_seconds_median", "time_ratio", "time_ratio_lo",
          "time_ratio_hi", "aa_ratio", "pairs", "noisy", "prime_seconds"]  # fmt: skip
TABLES = ("train.csv", "quality.csv", "cost.csv")
MAX_RESTARTS = 40


def sweep_process(*args: str) -> subprocess.Popen:
    """`python -m runners.sweep ARGS --no-reports` in the repository root, started, not awaited."""
    command = [sys.executable, "-m", "runners.sweep", *args, "--no-reports"]
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def start_or_resume(folder: Path, config: list[str]) -> subprocess.Popen:
    """A new sweep of `config` into `folder`, or `--resume` once it has a manifest."""
    if (folder / "manifest.json").exists():
        return sweep_process("--resume", "--out", str(folder))
    return sweep_process(*config, "--out", str(folder))


def mtime(path: Path) -> int:
    """`path`'s modification time in ns, 0 when it does not exist."""
    return path.stat().st_mtime_ns if path.exists() else 0


def wait_for_write(
    path: Path, before: int, proc: subprocess.Popen, timeout: float = math.inf
) -> None:
    """Until the sweep (re)writes `path` (its mtime leaves `before`), ends, or `timeout` passes."""
    end = time.monotonic() + timeout
    while mtime(path) == before and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.05)


def comparable_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """train/quality/cost tables without their wall-clock columns, rows in a canonical order."""
    tables = {}
    for name in TABLES:
        frame = pd.read_csv(folder / name).drop(columns=TIMING, errors="ignore")
        tables[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return tables


def _manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {"cells": {}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kill_resume", description=__doc__)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, help="folder for the two results (default: temp)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="kill-resume-"))
    whole, broken = work / "whole", work / "broken"
    start = time.perf_counter()
    if sweep_process(*CONFIG, "--out", str(whole)).wait() != 0:
        sys.exit("the uninterrupted sweep failed")
    total = time.perf_counter() - start
    print(f"uninterrupted run: {total:.1f} s, results in {whole}")
    rng, kills, restarts = random.Random(args.seed), 0, 0
    while kills < args.kills and restarts < MAX_RESTARTS:
        restarts += 1
        before = mtime(broken / "manifest.json")
        proc = start_or_resume(broken, CONFIG)
        wait_for_write(broken / "manifest.json", before, proc)
        time.sleep(rng.uniform(0.0, 0.05 * total))
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        cells = _manifest(broken)["cells"]
        done = sum(c["status"] == "done" for c in cells.values())
        kills += alive and done < len(cells)
        how = "killed" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
        print(f"restart {restarts}: {how}; cells done {done} / {len(cells)}", flush=True)
    final = start_or_resume(broken, CONFIG)
    if final.wait() != 0:
        sys.exit(f"the final resume failed: {final.stderr.read() if final.stderr else ''}")
    statuses = {c["status"] for c in _manifest(broken)["cells"].values()}
    print(f"kills: {kills}; final cell statuses: {sorted(statuses)}")
    got, want = comparable_tables(broken), comparable_tables(whole)
    for name in TABLES:
        keys = [k for k in ("cell", "step", "layer", "checkpoint") if k in got[name]]
        once = not got[name].duplicated(keys).any()
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=False, rtol=1e-9)
        print(
            f"{name}: {len(got[name])} rows, equal to the uninterrupted run; each row once: {once}"
        )


if __name__ == "__main__":
    main()
