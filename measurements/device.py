"""Device choice, thread count and timing that is honest on CPU and CUDA."""

from __future__ import annotations

import os
import time

import torch


class DeviceError(ValueError):
    """A device the user asked for is not available."""


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but torch sees no CUDA device; use cpu")
    if name not in ("cpu", "cuda"):
        raise DeviceError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


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
