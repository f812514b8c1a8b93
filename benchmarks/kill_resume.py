"""SIGKILL a sweep at random moments, resume it each time, and compare with an uninterrupted run.

    python -m benchmarks.kill_resume [--kills 10] [--write-kills 10] [--seed 1] [--work DIR]

One uninterrupted sweep (the four tabular tasks, backprop / fg-activity / sparse-vjp, 3 seeds,
step budgets only, `--seconds 0`) gives the reference and its wall time T. The same sweep is then
started in a second folder and, once its manifest is written, killed with SIGKILL after a uniform
random delay in [0, 0.05 T] (seeded); each restart is `--resume`, until `--kills` kills have
landed while cells were still pending (kills after the last cell are reported, not counted). A
last `--resume` finishes it. Checked: every cell `done`, every row present once, and every
column of train.csv, quality.csv and cost.csv equal to the reference apart from the wall-clock
ones. Prints one line per restart.

Then `--write-kills` more kills land in the middle of a table write: each restart sets
`CHEAPGRAD_KILL_IN_WRITE=N:F` (`measurements.store`), N uniform in 1..3 and F uniform in (0, 1),
so the process SIGKILLs itself after writing the fraction F of its N-th table write (these run
in forked children of one process, `ForkServer`, to spare the imports); the sweep is then
finished, and one table is cut by hand at a random byte (as a non-atomic copy or a full disk
would leave it), which `--resume` must notice and repair. The tables are compared at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
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


def sweep_process(*args: str, kill_in_write: str = "") -> subprocess.Popen:
    """`python -m runners.sweep ARGS --no-reports` in the repository root, started, not awaited
    (with `kill_in_write` "N:F", killing itself in the middle of its N-th table write)."""
    command = [sys.executable, "-m", "runners.sweep", *args, "--no-reports"]
    env = {**os.environ, "CHEAPGRAD_KILL_IN_WRITE": kill_in_write}
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )


def start_or_resume(folder: Path, config: list[str], kill_in_write: str = "") -> subprocess.Popen:
    """A new sweep of `config` into `folder`, or `--resume` once it has a manifest."""
    if (folder / "manifest.json").exists():
        return sweep_process("--resume", "--out", str(folder), kill_in_write=kill_in_write)
    return sweep_process(*config, "--out", str(folder), kill_in_write=kill_in_write)


# Runs sweeps in forked children of one process that imported the sweep but ran nothing (so no
# thread pool exists at the fork): a restart costs the cells, not the seconds of imports. One
# line in: the CHEAPGRAD_KILL_IN_WRITE value ("-" for none), a tab, the arguments, tab-separated;
# one line out: the child's exit status, negative for the signal that ended it.
FORK_SERVER = """
import os, sys
from runners.sweep import main
for line in sys.stdin:
    kill, *args = line.rstrip("\\n").split("\\t")
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.environ["CHEAPGRAD_KILL_IN_WRITE"] = "" if kill == "-" else kill
        os._exit(main([*args, "--no-reports"]))
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    print(code, flush=True)
"""


class ForkServer:
    """Sweeps run in forked children of a process started once (see `FORK_SERVER`)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip

    def run(self, args: list[str], kill_in_write: str = "") -> int:
        """The exit status of `python -m runners.sweep ARGS --no-reports`, run in a child."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\t".join([kill_in_write or "-", *args]) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


def kill_in_writes(
    folder: Path, config: list[str], kills: int, rng: random.Random, executor: Sequence[str] = ()
) -> list[str]:
    """Restart the sweep in `folder` until `kills` restarts died by SIGKILL in the middle of a
    table write (the N-th write, N uniform in 1..3 but at most the pending cells, with a uniform
    fraction of it written); then finish it. `executor` (e.g. `--executor pool --jobs 2`) is
    given to every start and resume. A line per restart."""
    lines: list[str] = []
    server = ForkServer()
    try:
        while sum("killed" in line for line in lines) < kills and len(lines) < MAX_RESTARTS:
            cells = _manifest(folder)["cells"]
            pending = sum(c["status"] != "done" for c in cells.values()) or 3
            point = f"{rng.randint(1, min(3, pending))}:{rng.uniform(0.01, 0.99):.2f}"
            resumed = (folder / "manifest.json").exists()
            args = ["--resume"] if resumed else config
            args = [*args, *executor, "--out", str(folder)]
            status = server.run(args, point)
            if status not in (0, -signal.SIGKILL):
                raise RuntimeError(f"the sweep in {folder} failed (exit {status})")
            cells = _manifest(folder)["cells"]
            done = sum(c["status"] == "done" for c in cells.values())
            how = "killed mid-write" if status else "finished"
            lines.append(f"kill point {point}: {how}; cells done {done} / {len(cells)}")
        if server.run(["--resume", *executor, "--out", str(folder)]) != 0:
            raise RuntimeError(f"the last resume of {folder} failed")
    finally:
        server.close()
    return lines


def truncate_a_table(folder: Path, rng: random.Random) -> str:
    """Cut one of the folder's tables at a random byte past its header; says which and where."""
    tables = sorted(p for p in folder.glob("*.csv") if p.stat().st_size)
    path = rng.choice(tables)
    text = path.read_bytes()
    at = rng.randint(text.index(b"\n") + 1, len(text) - 1)
    path.write_bytes(text[:at])
    return f"{path.name} cut at byte {at} of {len(text)}"


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


def comparable_tables(folder: Path, names: tuple[str, ...] = TABLES) -> dict[str, pd.DataFrame]:
    """The tables `names` without their wall-clock columns, rows in a canonical order."""
    tables = {}
    for name in names:
        frame = pd.read_csv(folder / name).drop(columns=TIMING, errors="ignore")
        tables[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return tables


def _manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {"cells": {}}


def same_tables(got: Path, want: Path, names: tuple[str, ...] = TABLES) -> list[str]:
    """Assert that the tables of `got` equal those of `want` (wall-clock columns aside), each
    row once; a line per table."""
    ours, theirs = comparable_tables(got, names), comparable_tables(want, names)
    lines = []
    for name in names:
        keys = [k for k in ("cell", "step", "layer", "checkpoint") if k in ours[name]]
        assert not ours[name].duplicated(keys).any(), f"{name}: a row is there twice"
        pd.testing.assert_frame_equal(ours[name], theirs[name], check_exact=False, rtol=1e-9)
        lines.append(f"{name}: {len(ours[name])} rows, equal to the uninterrupted run, each once")
    return lines


def _statuses(folder: Path) -> set[str]:
    return {c["status"] for c in _manifest(folder)["cells"].values()}


def finish(folder: Path, config: list[str]) -> set[str]:
    """Resume the sweep in `folder` to its end; the cells' statuses."""
    final = start_or_resume(folder, config)
    if final.wait() != 0:
        sys.exit(f"the final resume failed: {final.stderr.read() if final.stderr else ''}")
    return {c["status"] for c in _manifest(folder)["cells"].values()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kill_resume", description=__doc__)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--write-kills", type=int, default=10)
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
    print(f"kills: {kills}; final cell statuses: {sorted(finish(broken, CONFIG))}")
    print("\n".join(same_tables(broken, whole)))
    mid = work / "mid-write"
    for line in kill_in_writes(mid, CONFIG, args.write_kills, rng):
        print(line, flush=True)
    print(f"cell statuses: {sorted(_statuses(mid))}; by hand: {truncate_a_table(mid, rng)}")
    print(f"final cell statuses: {sorted(finish(mid, CONFIG))}")
    print("\n".join(same_tables(mid, whole)))


if __name__ == "__main__":
    main()
