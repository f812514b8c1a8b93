"""Peak memory of one step: CUDA's allocator statistics, or on the CPU a storage tracker.

On the CPU there is no allocator statistic, so `StoragePeak` (a `TorchDispatchMode`) watches every
tensor storage an op creates while it is active, adds its bytes when it first appears, and takes
them away when the storage is freed (a weak-reference finalizer). Its peak is the most memory the
step held at once beyond what existed before it (parameters and the batch): activations kept for
the backward pass, gradients, temporaries. That is what differs between estimators, and what
`torch.cuda.max_memory_allocated` minus the starting allocation measures on a GPU.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class StoragePeak(TorchDispatchMode):
    """Tracks live bytes of storages created inside the mode; `peak` is their maximum."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor) and item.device.type != "meta":
                self._track(item.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = storage.data_ptr()
        size = storage.nbytes()
        if size == 0 or key in self._tracked:
            return
        self._tracked.add(key)
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._release, key, size)

    def _release(self, key: int, size: int) -> None:
        self._tracked.discard(key)
        self.live -= size


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """The most memory `fn` holds at once beyond what was allocated before it ran."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    with StoragePeak() as tracker:
        fn()
    return tracker.peak
