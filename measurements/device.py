"""Device choice, thread count and timing that is honest on CPU and CUDA."""

from __future__ import annotations

import os
import time

import torch


class DeviceError(ValueError):
    """A device the user asked for is not available."""


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; `cuda` or `cuda:N` without that GPU is an
    error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    index = name.removeprefix("cuda:")
    if name not in ("cpu", "cuda") and not (index != name and index.isdigit()):
        raise DeviceError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {name} was asked for but torch sees no CUDA device; use cpu")
    if index != name and int(index) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise DeviceError(f"--device {name}: torch sees {count} CUDA devices (cuda:0..{count - 1})")
    return torch.device(name)


def set_precision(tf32: bool) -> dict[str, bool]:
    """The float32 policy on CUDA: TensorFloat-32 for matmuls and cuDNN convolutions only when
    `tf32` (off by default, so that an unbiased estimator is not charged with TF32's rounding as
    bias); returns the policy for the manifest."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return {"tf32": tf32}


def use_available_cores() -> int:
    """Give torch one intra-op thread per core this process may run on; returns the count."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, cores or 1))
    return torch.get_num_threads()


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so that wall-clock time covers the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    """Wall-clock seconds after all queued work on `device` has finished."""
    synchronize(device)
    return time.perf_counter()


def describe(device: torch.device) -> str:
    """A human-readable device name for manifests."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
