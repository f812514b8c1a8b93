"""Executors beyond one process: a pool of worker processes, and Slurm through submitit.

Every executor maps cells to outcomes (`runners.cells.Executor`); the driver stays the only
writer of the results folder (workers return rows). What crosses the process boundary is a
`WorkerSpec` (device name, data source, folder, budget override, draws, thread count, the outside
estimators' import paths): no tensors, no callbacks. The worker rebuilds a `Context` from it.

`PoolExecutor`: quality cells, which time nothing, run `jobs` at a time in worker processes
("spawn" context, `cores // jobs` torch threads each, at least 1). Cells whose wall time is
measured (train, tune, cost, scaling) run alone, in the driver, after the pool's batch has
drained, so nothing else runs meanwhile. Each outcome says where it ran (`Outcome.runner`:
"pool:N" shared with N-1 others, "local" alone), which the manifest records per cell.

`SlurmExecutor`: one job-array task per cell through submitit's `AutoExecutor`, each task with
its own allocation (partition, GPUs, CPUs, time, array parallelism, extra sbatch options:
`SlurmOptions`). A preempted or timed-out task is requeued and reruns its cell (`CellJob` is
checkpointable); cells already done are never submitted. submitit's `local` and `debug` clusters
run the same path without Slurm (`debug`: in this process).
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from estimators import registry
from measurements.budget import Seconds, Steps
from measurements.context import Context
from measurements.device import resolve_device, set_precision
from runners.cells import Cell, LocalExecutor, Outcome, run_cell
from tasks import TaskError, get_task
from tasks.data import DataSource

if TYPE_CHECKING:
    from runners.presets import Preset

EXECUTORS = ("local", "pool", "slurm")
PR_SET_PDEATHSIG = 1  # Linux prctl option: a signal for this process when its parent dies
TIMED = frozenset({"train", "tune", "cost", "scaling", "study"})  # wall time is measured: run alone


def available_cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to rebuild the sweep's context: plain, picklable values only."""

    device: str
    data_root: str | None
    download: bool
    folder: str
    steps: Steps
    draws: int
    seconds: Seconds
    threads: int | None = None  # torch intra-op threads; None: every core the worker may use
    imports: dict[str, str] = field(default_factory=dict)  # outside estimators: name -> path
    tf32: bool = False  # the driver's float32 policy on CUDA (`measurements.device.set_precision`)
    data_threads: int = 1  # the driver's threads: data generated in float32 (MNIST-1D) rounds
    # by the thread count, so a worker builds its data sets with the driver's count

    @classmethod
    def of(cls, ctx: Context, threads: int | None, imports: dict[str, str]) -> WorkerSpec:
        """The spec of a driver's context."""
        root = str(ctx.source.root) if ctx.source.root is not None else None
        return cls(str(ctx.device), root, ctx.source.download, str(ctx.folder), ctx.steps,
                   ctx.draws, ctx.seconds, threads, dict(imports),
                   torch.backends.cuda.matmul.allow_tf32, torch.get_num_threads())  # fmt: skip

    def context(self) -> Context:
        """Set this process up as the spec says (threads, outside estimators) and return a fresh
        context (data sets are loaded on first use)."""
        torch.set_num_threads(max(1, self.threads or available_cores()))
        set_precision(self.tf32)
        for name, path in self.imports.items():
            if name not in registry.names():
                registry.load_path(path)
        root = Path(self.data_root) if self.data_root else None
        return Context(resolve_device(self.device), DataSource(root, self.download),
                       Path(self.folder), self.steps, self.draws, self.seconds)  # fmt: skip


def measure(cell: Cell, ctx: Context, runner: str, data_threads: int | None = None) -> Outcome:
    """Run one cell; an exception is recorded as the cell's failure. With `data_threads`, the
    cell's data set is first built under that many torch threads (the driver's)."""
    start = time.perf_counter()
    try:
        if data_threads is not None:
            own = torch.get_num_threads()
            torch.set_num_threads(data_threads)
            try:
                ctx.data(get_task(cell.task))
            finally:
                torch.set_num_threads(own)
        rows = run_cell(cell, ctx)
    except Exception as exc:  # a failed cell is a result, the sweep goes on
        error = "".join(traceback.format_exception_only(exc)).strip()
        return Outcome({}, time.perf_counter() - start, error, runner)
    return Outcome(rows, time.perf_counter() - start, runner=runner)


_worker: tuple[Context, str, int] | None = None  # this worker's context, runner tag, data threads


def _start_worker(spec: WorkerSpec, runner: str, driver: int) -> None:
    global _worker
    if sys.platform.startswith("linux"):  # die with the driver, even a SIGKILLed one
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != driver:  # it died before the line above
        os._exit(1)
    _worker = (spec.context(), runner, spec.data_threads)


def _pool_cell(cell: Cell) -> Outcome:
    assert _worker is not None, "a pool worker runs _start_worker first"
    return measure(cell, *_worker)


class PoolExecutor:
    """Quality cells `jobs` at a time in worker processes; timed cells alone in the driver."""

    def __init__(self, jobs: int, imports: dict[str, str] | None = None) -> None:
        if jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {jobs}")
        self.jobs = jobs
        self.imports = dict(imports or {})

    @property
    def threads(self) -> int:
        """Torch threads per worker: the cores shared out, at least one each."""
        return max(1, available_cores() // self.jobs)

    def map(
        self, cells: Iterable[Cell], ctx: Context, on_start: Callable[[Cell], None]
    ) -> Iterator[tuple[Cell, Outcome]]:
        cells = list(cells)
        shared = [c for c in cells if c.measure not in TIMED]
        alone = [c for c in cells if c.measure in TIMED]
        if shared:
            yield from self._pool(shared, ctx, on_start)
        yield from LocalExecutor().map(alone, ctx, on_start)

    def _pool(
        self, cells: list[Cell], ctx: Context, on_start: Callable[[Cell], None]
    ) -> Iterator[tuple[Cell, Outcome]]:
        spec = WorkerSpec.of(ctx, self.threads, self.imports)
        runner = f"pool:{self.jobs}"
        pool = ProcessPoolExecutor(
            max_workers=min(self.jobs, len(cells)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(spec, runner, os.getpid()),
        )
        try:
            running: dict[Future[Outcome], Cell] = {}
            for cell in cells:
                on_start(cell)
                running[pool.submit(_pool_cell, cell)] = cell
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    cell = running.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool as exc:
                        outcome = Outcome({}, 0.0, f"worker process died: {exc}", runner)
                    yield cell, outcome
        except BaseException:  # interrupted (or closed early): stop the running cells now
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each job-array task, and where submitit keeps its files."""

    folder: str  # submitit's scripts, pickles and logs (outside the results folder)
    cluster: str | None = None  # None: Slurm; "local" or "debug": submitit's stand-ins
    partition: str | None = None
    gpus: int | None = None  # GPUs per task
    cpus: int | None = None  # CPUs per task
    minutes: int = 60  # time limit per task
    parallelism: int | None = None  # array tasks running at once
    sbatch: dict[str, str | bool] = field(default_factory=dict)  # extra #SBATCH options

    def parameters(self) -> dict[str, Any]:
        """submitit's `update_parameters` keywords for these options."""
        params: dict[str, Any] = {"timeout_min": self.minutes, "name": "cheapgrad"}
        if self.gpus is not None:
            params["gpus_per_node"] = self.gpus
        if self.cpus is not None:
            params["cpus_per_task"] = self.cpus
        if self.partition is not None:
            params["slurm_partition"] = self.partition
        if self.parallelism is not None:
            params["slurm_array_parallelism"] = self.parallelism
        if self.sbatch:
            params["slurm_additional_parameters"] = dict(self.sbatch)
        return params


class CellJob:
    """One cell as a Slurm task: rebuilds the context and measures the cell; requeued and rerun
    whole when preempted or out of time (`checkpoint`, submitit's protocol)."""

    def __call__(self, spec: WorkerSpec, cell: Cell) -> Outcome:
        job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID") or ""
        runner = f"slurm:{job}" if job else "slurm"
        threads = torch.get_num_threads()  # restored: the `debug` cluster runs in the driver
        try:
            return measure(cell, spec.context(), runner, spec.data_threads)
        finally:
            torch.set_num_threads(threads)

    def checkpoint(self, spec: WorkerSpec, cell: Cell) -> Any:
        """Resubmit the same cell (it reruns from its start: a cell is the unit of progress)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, spec, cell)


class SlurmExecutor:
    """Every cell as one task of a Slurm job array (submitit), each on its own allocation."""

    def __init__(
        self, options: SlurmOptions, imports: dict[str, str] | None = None, device: str = "auto"
    ) -> None:
        self.options = options
        self.imports = dict(imports or {})
        self.device = device  # resolved on each task's node (`auto`: CUDA when it has a GPU)

    def executor(self) -> Any:
        """submitit's `AutoExecutor` with the options' parameters."""
        import submitit

        executor = submitit.AutoExecutor(folder=self.options.folder, cluster=self.options.cluster)
        executor.update_parameters(**self.options.parameters())
        return executor

    def map(
        self, cells: Iterable[Cell], ctx: Context, on_start: Callable[[Cell], None]
    ) -> Iterator[tuple[Cell, Outcome]]:
        cells = list(cells)
        if not cells:
            return
        spec = replace(WorkerSpec.of(ctx, self.options.cpus, self.imports), device=self.device)
        jobs = self.executor().map_array(CellJob(), [spec] * len(cells), cells)
        for cell in cells:
            on_start(cell)
        waiting = dict(zip(jobs, cells, strict=True))
        try:
            while waiting:  # the finished ones first; else wait on the oldest (`result` blocks)
                done = [job for job in waiting if job.done()] or [next(iter(waiting))]
                for job in done:
                    cell = waiting.pop(job)
                    try:
                        outcome = job.result()
                    except Exception as exc:  # the job itself failed (not the cell): say so
                        error = "".join(traceback.format_exception_only(exc)).strip()
                        outcome = Outcome(
                            {}, 0.0, f"slurm job {job.job_id} failed: {error}", "slurm"
                        )
                    yield cell, outcome
        finally:  # interrupted: cancel what is left (a resume submits those cells again)
            for job in waiting:
                job.cancel(check=False)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The sweep's executor flags."""
    add = parser.add_argument
    add("--executor", choices=EXECUTORS,
        help="local (default): one cell after another; pool: --jobs worker processes for quality "
             "cells (timed cells run alone); slurm: a job array through submitit")  # fmt: skip
    add("--jobs", type=int, help="pool: worker processes (default: every core)")
    add("--slurm-partition", help="slurm: partition of each task")
    add("--slurm-gpus", type=int, help="slurm: GPUs per task")
    add("--slurm-cpus", type=int, help="slurm: CPUs per task (the cell's torch threads)")
    add("--slurm-time", type=int, help="slurm: time limit per task in minutes (default: 60)")
    add("--slurm-parallelism", type=int, help="slurm: array tasks running at once")
    add(
        "--slurm-option",
        action="append",
        metavar="KEY[=VALUE]",
        help="slurm: an extra #SBATCH option (repeatable), e.g. account=proj or exclusive",
    )
    add(
        "--slurm-folder",
        type=Path,
        help="slurm: submitit's scripts and logs (default: OUT.slurm beside the results)",
    )
    add("--slurm-cluster", choices=("slurm", "local", "debug"), default="slurm",
        help="slurm: submitit's cluster; local and debug run the tasks without Slurm")  # fmt: skip


def with_preset(args: argparse.Namespace, preset: Preset | None) -> argparse.Namespace:
    """The flags, with the preset's `executor`, `jobs` (for the pool) and `[slurm]` values (for
    Slurm) where the flag was not given: flags win. A resume passes no preset (flags only)."""
    given = dict(vars(args))
    if preset is not None:
        given["executor"] = given["executor"] or preset.executor
        taken: dict[str, object] = {"jobs": preset.jobs} if given["executor"] == "pool" else {}
        if given["executor"] == "slurm":
            taken = {f"slurm_{key}": value for key, value in (preset.slurm or {}).items()}
        given |= {key: value for key, value in taken.items() if given[key] is None}
    return argparse.Namespace(**{**given, "executor": given["executor"] or "local"})


def from_args(args: argparse.Namespace, out: Path, imports: dict[str, str]) -> Any:
    """The executor the flags ask for (a `TaskError`, one line, for bad values)."""
    if args.executor != "pool" and args.jobs is not None:
        raise TaskError("--jobs applies to --executor pool only")
    if args.executor == "pool":
        if args.jobs is not None and args.jobs < 1:
            raise TaskError(f"--jobs must be >= 1, got {args.jobs}")
        return PoolExecutor(available_cores() if args.jobs is None else args.jobs, imports)
    if args.executor == "local":
        return LocalExecutor()
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise TaskError("--executor slurm needs submitit: pip install 'cheapgrad[slurm]'") from None
    sbatch: dict[str, str | bool] = {}
    for option in args.slurm_option or []:
        key, sep, value = option.partition("=")
        if not key:
            raise TaskError(f"--slurm-option takes KEY=VALUE or KEY, got {option!r}")
        sbatch[key] = value if sep else True  # a bare KEY is a flag: #SBATCH --KEY
    for flag in ("gpus", "cpus", "time", "parallelism"):
        value = getattr(args, f"slurm_{flag}")
        if value is not None and value < (0 if flag == "gpus" else 1):
            raise TaskError(f"--slurm-{flag} must be >= {0 if flag == 'gpus' else 1}, got {value}")
    folder = args.slurm_folder or out.with_name(out.name + ".slurm")
    options = SlurmOptions(
        str(folder), None if args.slurm_cluster == "slurm" else args.slurm_cluster,
        args.slurm_partition, args.slurm_gpus, args.slurm_cpus,
        60 if args.slurm_time is None else args.slurm_time,
        args.slurm_parallelism, sbatch,
    )  # fmt: skip
    return SlurmExecutor(options, imports, args.device)


def driver_device(args: argparse.Namespace) -> str:
    """The device of the driver process: the CPU under Slurm (it only checks the data and writes
    results; the tasks resolve `--device` on their nodes), else `--device`."""
    return "cpu" if args.executor == "slurm" else args.device


def describe(executor: object) -> dict[str, str]:
    """What the manifest's environment says of where the cells ran, beyond the driver's device."""
    if isinstance(executor, SlurmExecutor):
        return {"executor": "slurm", "device": executor.device,
                "device_name": "the Slurm tasks' (see their logs)"}  # fmt: skip
    if isinstance(executor, PoolExecutor):
        return {"executor": f"pool:{executor.jobs}"}
    return {"executor": "local"}
