"""A task is data: which model, which data, which loss, what target and what budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tasks.data import DataSource, Splits, load

EMBEDDED = ("digits", "digits-1-vs-rest", "mnist1d", "breast-cancer", "diabetes", "synthetic20")


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-example cross-entropy: (B, classes), (B,) -> (B,)."""
    return F.cross_entropy(logits, targets, reduction="none")


@dataclass(frozen=True, kw_only=True)
class Task:
    """One benchmark task.

    model: builds a freshly initialised model (seed the global RNG first for reproducibility).
    dataset: a name in `tasks.data.DATASETS`.
    loss: per-example loss, (logits, targets) -> (B,); the batch loss is its mean.
    target_acc: validation accuracy that counts as "reached"; `target_note` says how it was set.
    steps: the training budget in optimisation steps; `seconds`, if set, also caps training time.
    optimizer, lr, lr_grid: the torch optimizer fed with the estimates, its default rate, and the
    rates a tuning run tries.
    """

    name: str
    description: str
    model: Callable[[], nn.Module]
    dataset: str
    target_acc: float
    target_note: str
    steps: int
    batch_size: int
    eval_every: int
    lr: float
    lr_grid: tuple[float, ...]
    optimizer: str = "adam"
    seconds: float | None = None
    loss: Callable[[Tensor, Tensor], Tensor] = cross_entropy

    @property
    def embedded(self) -> bool:
        """Whether the data ships with the suite's dependencies (no files, no network)."""
        return self.dataset in EMBEDDED

    @cached_property
    def n_params(self) -> int:
        """Number of trainable parameters (counted on the meta device, no memory used)."""
        with torch.device("meta"):
            model = self.model()
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    def load(self, source: DataSource | None = None) -> Splits:
        """The task's train/validation data."""
        return load(self.dataset, source)
