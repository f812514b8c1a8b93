"""FLOP counting with `torch.utils.flop_counter.FlopCounterMode`."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matmuls and convolutions `fn` runs (forward and backward alike)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())
