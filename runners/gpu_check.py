"""Check that a GPU run measures what a CPU run does: one command, one line per check.

    python -m runners.gpu_check                 # every estimator on every embedded task, cuda
    python -m runners.gpu_check --device cuda:1 --tasks mlp-mnist1d --estimators backprop

With no CUDA device (and `--device` left at `cuda`) it prints one line and exits 0. On a GPU, with
TF32 off (`measurements.device.set_precision`), for each embedded task:

- exact gradient: backprop's batch gradient on the device (float32) against the same batch and
  parameters on the CPU in float64; relative error (||g - g64|| / ||g64||) at most `EXACT_TOL`;
- each estimator: `--steps` training steps on the device (finite losses), then R = `--draws`
  estimates at the initial parameters, compared with the float64 CPU gradient: an unbiased
  estimator's draws must centre on it, T = ||mean - g64||^2 / (tr(S) / R) at most `BIAS_T`
  (S the draws' sample covariance; E[T] ~ 1 when unbiased, so by Markov's inequality a sound
  estimator exceeds 20 with probability about 0.05 or less; a float32-vs-float64 or a
  device-specific bug shifts the mean by far more than its standard error);
- cost: one backprop step timed by CUDA events against the wall clock after synchronising
  (`measurements.timing.timed`, what the cost cell uses); they agree within `TIME_TOL`, then
  the cost cell (`measurements.cost.measure_cost`) runs for backprop on the device;
- memory: the CPU's storage tracker (`measurements.memory.StoragePeak`) run on the device against
  `torch.cuda.max_memory_allocated` for one estimator step: tracker <= allocator peak (the
  allocator rounds blocks up) and at least `MEMORY_FLOOR` of it.

`--device cpu` runs the same checks on the CPU (events and the allocator comparison skipped), to
test this command where no GPU is at hand. Exit status: 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from torch import Tensor

from estimators import EstimatorError, make_estimator, registry, trainable_parameters
from measurements.context import Context
from measurements.cost import measure_cost
from measurements.device import DeviceError, resolve_device, set_precision, synchronize
from measurements.memory import StoragePeak, peak_bytes
from measurements.timing import timed
from measurements.train import Run, train
from tasks import Task, TaskError, get_task
from tasks.boundary import Parser, run_command
from tasks.catalog import TASKS
from tasks.data import DataSource

EXACT_TOL = 1e-4  # float32 on the device against float64 on the CPU, TF32 off
BIAS_T = 20.0
TIME_TOL = 0.25  # CUDA events against synchronised wall clock, relative
MEMORY_FLOOR = 0.5


def _batch(task: Task, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    data = task.load(DataSource())
    x, y = data.x_train[: task.batch_size], data.y_train[: task.batch_size]
    x = x.to(device, dtype) if x.is_floating_point() else x.to(device)
    return x, y.to(device)


def _flat(grads: dict[str, Tensor]) -> Tensor:
    return torch.cat([g.detach().double().flatten().cpu() for g in grads.values()])


def exact(task: Task, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Backprop's batch gradient at the seed-0 initialisation, flattened, float64 on the CPU."""
    torch.manual_seed(0)
    model = task.model().to(device, dtype)
    x, y = _batch(task, device, dtype)
    params = trainable_parameters(model)
    loss = task.loss(model(x), y).mean()
    return _flat(dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True)))


def draws(task: Task, spec: str, device: torch.device, count: int) -> Tensor:
    """`count` estimates at the seed-0 initialisation on `device` (float32), flattened."""
    torch.manual_seed(0)
    model = task.model().to(device)
    est = make_estimator(spec).bind(model, task.loss)
    batch = _batch(task, device, torch.float32)
    generator = torch.Generator(device=device).manual_seed(1)
    stacked = est.estimate_draws(batch, count, generator).grads
    return torch.cat([g.detach().double().flatten(1).cpu() for g in stacked.values()], dim=1)


def bias_t(samples: Tensor, truth: Tensor) -> float:
    """||mean - truth||^2 / max(tr(S) / R, (EXACT_TOL ||truth||)^2): about 1 or less for draws
    centred on `truth` (the floor is float32's rounding allowance, which a deterministic
    estimator, S = 0, is held to)."""
    r = samples.shape[0]
    mean = samples.mean(0)
    trace = float(samples.var(0, unbiased=True).sum())
    floor = float(EXACT_TOL * truth.norm()) ** 2
    return float((mean - truth).pow(2).sum()) / max(trace / r, floor)


def event_seconds(fn: Callable[[], object], device: torch.device) -> float:
    """`fn`'s time on the device by CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    synchronize(device)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000


class Checks:
    """Records checks, prints one line each."""

    def __init__(self) -> None:
        self.failed = 0
        self.passed = 0

    def __call__(self, ok: bool, what: str) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
        self.passed += ok
        self.failed += not ok


def check_task(task: Task, specs: list[str], device: torch.device, steps: int, count: int,
               check: Checks) -> None:  # fmt: skip
    """Every check of one task."""
    truth = exact(task, torch.device("cpu"), torch.float64)
    got = exact(task, device, torch.float32)
    rel = float((got - truth).norm() / truth.norm())
    check(rel <= EXACT_TOL, f"{task.name} exact gradient: rel. error {rel:.2e} (<= {EXACT_TOL})")
    data = task.load(DataSource()).to(device)
    for spec in specs:
        est = make_estimator(spec)
        try:
            last = train(Run(task, est, 0, task.lr, device, steps), data).rows[-1]
            ran = last["status"] == "completed" and math.isfinite(last["train_loss"])
            check(ran, f"{task.name} {est.spec}: {steps} steps, {last['status']}, "
                       f"final loss {last['train_loss']:.4g}")  # fmt: skip
            samples = draws(task, spec, device, count)
        except Exception as exc:  # a crash on the device is a failed check, the rest go on
            check(False, f"{task.name} {spec}: {type(exc).__name__}: {exc}")
            continue
        cosine = float(samples.mean(0) @ truth / (samples.mean(0).norm() * truth.norm()))
        if est.unbiased:
            t = bias_t(samples, truth)
            check(t <= BIAS_T, f"{task.name} {est.spec}: unbiased, T = {t:.2f} (<= {BIAS_T:g}),"
                               f" mean cosine {cosine:.3f}")  # fmt: skip
        else:
            finite = bool(torch.isfinite(samples).all())
            check(finite, f"{task.name} {est.spec}: biased, finite, mean cosine {cosine:.3f}")


def check_cost_and_memory(task: Task, spec: str, device: torch.device, check: Checks) -> None:
    """CUDA events against the synchronised wall clock, the cost cell, and the memory tracker
    against the allocator, on one backprop step and one step of `spec`."""
    torch.manual_seed(0)
    model = task.model().to(device)
    batch = _batch(task, device, torch.float32)
    generator = torch.Generator(device=device).manual_seed(1)
    step = {s: make_estimator(s).bind(model, task.loss) for s in ("backprop", spec)}

    def run(s: str) -> Callable[[], object]:
        return lambda: step[s].estimate(batch, generator)

    for _ in range(3):  # warm-up: kernels chosen and loaded before anything is timed
        run("backprop")()
    if device.type == "cuda":
        wall = min(timed(run("backprop"), device, time.perf_counter) for _ in range(20))
        event = min(event_seconds(run("backprop"), device) for _ in range(20))
        gap = abs(wall - event) / event
        check(gap <= TIME_TOL or abs(wall - event) < 50e-6,
              f"{task.name} backprop step: events {event * 1e3:.3f} ms, "
              f"wall {wall * 1e3:.3f} ms")  # fmt: skip
        allocator = peak_bytes(run(spec), device)
        with StoragePeak() as tracker:
            run(spec)()
        synchronize(device)
        ok = MEMORY_FLOOR * allocator <= tracker.peak <= allocator
        check(ok, f"{task.name} {spec} memory: tracker {tracker.peak:,} B, allocator peak "
                  f"{allocator:,} B")  # fmt: skip
    with TemporaryDirectory() as folder:
        ctx = Context(device, DataSource(), Path(folder), 2, 4)
        try:
            [row] = measure_cost(task, "backprop", ctx)
            check(row["step_seconds"] > 0, f"{task.name} cost cell: "
                  f"{row['step_seconds'] * 1e3:.3f} ms per backprop step")  # fmt: skip
        except Exception as exc:
            check(False, f"{task.name} cost cell: {type(exc).__name__}: {exc}")


def parser() -> Parser:
    """The command line."""
    parser = Parser(prog="python -m runners.gpu_check", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--device", default="cuda", help="cuda, cuda:N, or cpu (to test this command)")
    add("--tasks", nargs="+", help="task names (default: every embedded task)")
    add("--estimators", nargs="+", help="estimator specs (default: every shipped estimator)")
    add("--steps", type=int, default=5, help="training steps per estimator")
    add("--draws", type=int, default=32, help="estimates drawn for the bias check")
    add("--tf32", action="store_true", help="allow TF32 (expect the exact check to fail)")
    return parser


def check(args: argparse.Namespace) -> int:
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: skipped, torch sees no CUDA device")
        return 0
    device = resolve_device(args.device)
    set_precision(args.tf32)
    names = args.tasks or [n for n, t in TASKS.items() if t.embedded]
    tasks = [get_task(n) for n in names]
    specs = [make_estimator(s).spec for s in args.estimators or registry.shipped_names()]
    checks = Checks()
    start = time.perf_counter()
    for task in tasks:
        check_task(task, specs, device, args.steps, args.draws, checks)
        check_cost_and_memory(task, specs[-1], device, checks)
    print(f"gpu_check on {device}: {checks.passed} passed, {checks.failed} failed "
          f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
    return 1 if checks.failed else 0


def main(argv: list[str] | None = None) -> int:
    return run_command(parser(), check, (EstimatorError, TaskError, DeviceError), argv)


if __name__ == "__main__":
    sys.exit(main())
