"""The CPU peak-memory tracker counts what a step holds at once, not what it ever allocated."""

from __future__ import annotations

import torch

from estimators import make_estimator
from measurements.memory import peak_bytes
from tasks.models import MLP
from tasks.task import cross_entropy

CPU = torch.device("cpu")


def test_sequential_temporaries_count_once_and_kept_ones_add_up() -> None:
    def freed_in_turn() -> None:
        for _ in range(3):
            torch.ones(1000)  # 4000 bytes, dropped at once

    kept: list[torch.Tensor] = []

    def kept_alive() -> None:
        kept.extend(torch.ones(1000) for _ in range(3))

    assert peak_bytes(freed_in_turn, CPU) == 4000
    assert peak_bytes(kept_alive, CPU) == 12000


def test_views_and_in_place_ops_add_nothing() -> None:
    def views() -> None:
        x = torch.ones(1000)
        x.view(10, 100).t()[0]
        x.add_(1.0)

    assert peak_bytes(views, CPU) == 4000


def test_backprop_memory_grows_with_depth() -> None:
    """Backprop keeps every layer's activation: 16 layers need more than 2."""
    x, y = torch.randn(256, 64), torch.randint(0, 10, (256,))

    def step_bytes(depth: int) -> int:
        torch.manual_seed(0)
        est = make_estimator("backprop").bind(MLP(64, 10, width=256, depth=depth), cross_entropy)
        return peak_bytes(lambda: est.estimate((x, y), torch.Generator()), CPU)

    shallow, deep = step_bytes(2), step_bytes(16)
    activation = 256 * 256 * 4  # one hidden layer's (B, width) float32 output
    assert deep - shallow >= 14 * activation
