"""Wall time of one quality-only sweep at `--jobs 1` and at `--jobs N` (the pool executor).

    python -m benchmarks.pool_speedup [--jobs 2] [--seeds 2] [--steps 200] [--work DIR]

The same sweep (default: two embedded tasks, four estimators, quality only, `--seconds 0`) runs
twice in this invocation, each a fresh `python -m runners.sweep` process writing its own folder
(checkpoints included), first with `--executor pool --jobs 1`, then `--jobs N`. Prints both wall
times and their ratio; issue 19's goal is at most 0.65 at N = 2. The ratio means something
only on an otherwise idle machine: during each run the machine's busy CPU time (`/proc/stat`)
less the CPU time of the sweep and its workers (`getrusage` of the children) is the work of
others, in cores on average; when it exceeds half a core beyond the `cores - N` the sweep leaves
free, the result says the machine was too busy. The quality numbers of the two runs are the
same (tests/test_executors.py).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runners.executors import available_cores

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["mlp-mnist1d", "bagnet-digits"]
ESTIMATORS = ["backprop", "fg-weight", "fg-activity", "spsa"]
GOAL = 0.65


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (every core; `/proc/stat`)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_seconds() -> float:
    """CPU seconds of this process's finished children and theirs (user + system)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def sweep_seconds(out: Path, jobs: int, args: argparse.Namespace) -> tuple[float, float]:
    """Wall time of the quality-only sweep into `out` with `jobs` pool workers, and the cores
    other work kept busy meanwhile (average)."""
    busy, mine = busy_seconds(), children_seconds()
    command = [sys.executable, "-m", "runners.sweep", "--tasks", *args.tasks,
               "--estimators", *args.estimators, "--seeds", str(args.seeds),
               "--steps", str(args.steps), "--draws", str(args.draws), "--measure", "quality",
               "--seconds", "0", "--executor", "pool", "--jobs", str(jobs), "--out", str(out),
               "--no-reports"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"the sweep with --jobs {jobs} failed: {done.stderr.strip()[-500:]}")
    wall = time.perf_counter() - start
    others = (busy_seconds() - busy) - (children_seconds() - mine)
    return wall, max(0.0, others) / wall


def verdict(ratio: float, other: float, cores: int, jobs: int) -> str:
    """What the ratio says, given the cores other work kept busy during the runs (the larger)."""
    spare = cores - jobs
    if other > spare + 0.5:
        return (
            f"machine too busy for the ratio to mean anything: other work held about "
            f"{other:.1f} cores of {cores} (the sweep leaves {spare} free); rerun it idle"
        )
    return f"goal <= {GOAL}x: {'met' if ratio <= GOAL else 'not met'}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pool_speedup", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2, help="pool workers of the second run")
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--estimators", nargs="+", default=ESTIMATORS)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--draws", type=int, default=16)
    parser.add_argument("--work", type=Path, help="folder for the two results (default: temp)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="pool-speedup-"))
    cores = available_cores()
    one, other_one = sweep_seconds(work / "jobs1", 1, args)
    many, other_many = sweep_seconds(work / f"jobs{args.jobs}", args.jobs, args)
    ratio = many / one
    print(f"--jobs 1: {one:.1f} s; --jobs {args.jobs}: {many:.1f} s; ratio {ratio:.2f}x")
    print(f"other work meanwhile: {other_one:.2f} and {other_many:.2f} cores of {cores}")
    print(verdict(ratio, max(other_one, other_many), cores, args.jobs))


if __name__ == "__main__":
    main()
