"""The `GradientEstimator` interface every estimator implements.

An estimator is bound to one model and one per-example loss. `estimate` returns one gradient
tensor per trainable parameter, the batch loss and diagnostics; it may read the estimator's
state but never changes it, so the quality protocol can draw many estimates from one frozen
state. State (predictors, subspaces, step counters) changes only in `update`, which the training
loop calls once per optimisation step with that step's `Estimate`. No estimator leaves `.grad`
behind on the model's parameters.

A subclass that sets `name` registers itself under that name when it is defined.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from estimators import registry
from estimators.errors import EstimatorError
from estimators.params import Param

Batch = tuple[Tensor, Tensor]  # (inputs, integer class targets)
PerExampleLoss = Callable[[Tensor, Tensor], Tensor]  # (logits, targets) -> (B,) losses


@dataclass
class Estimate:
    """One gradient estimate at the current parameters.

    grads: one tensor per trainable parameter, keyed and shaped like `model.named_parameters()`.
    loss: the batch loss (mean of the per-example losses), a detached scalar.
    diagnostics: named scalars worth logging (alignment, projection error, ...).
    feedback: whatever the estimator's `update` needs from this step (for example a true
        gradient on a control micro-batch); opaque to everyone else.
    """

    grads: dict[str, Tensor]
    loss: Tensor
    diagnostics: dict[str, float] = field(default_factory=dict)
    feedback: Any = None


@dataclass
class Draws:
    """R independent estimates at one frozen state, stacked: each grad is (R, *param.shape)."""

    grads: dict[str, Tensor]
    loss: Tensor

    @property
    def count(self) -> int:
        return next(iter(self.grads.values())).shape[0]


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters an estimator must return a gradient for, in `named_parameters` order."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


class GradientEstimator(ABC):
    """Base class: declare `name`, `unbiased`, `params`; implement `estimate`.

    The class docstring of a concrete estimator states its formula, whether it is unbiased and
    why, its cost in forward-pass units, and its reference.
    """

    name: ClassVar[str]
    unbiased: ClassVar[bool]
    params: ClassVar[tuple[Param, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if not isinstance(getattr(cls, "unbiased", None), bool):
                raise TypeError(f"{cls.__qualname__}.unbiased: declare `unbiased = True|False`")
            registry.register(cls)

    def __init__(self, **values: Any) -> None:
        declared = {p.name: p for p in self.params}
        unknown = sorted(set(values) - set(declared))
        if unknown:
            valid = ", ".join(declared) if declared else "none"
            raise EstimatorError(
                f"{self.name}: unknown parameter {unknown[0]!r}; valid parameters: {valid}"
            )
        self.config: dict[str, Any] = {}
        for p in self.params:
            value = p.check(values[p.name], self.name) if p.name in values else p.default
            self.config[p.name] = value
            setattr(self, p.name, value)
        self._model: nn.Module | None = None
        self._loss: PerExampleLoss | None = None

    @property
    def params_str(self) -> str:
        """Compact, stable description of the parameter values, e.g. `k=10,tangents=1`."""
        if not self.config:
            return "-"
        return ",".join(f"{k}={_format(v)}" for k, v in self.config.items())

    @property
    def spec(self) -> str:
        """The string that recreates this estimator with `make_estimator`."""
        return self.name if not self.config else f"{self.name}:{self.params_str}"

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            raise RuntimeError(f"{self.name}: call bind(model, loss) before estimating")
        return self._model

    @property
    def loss(self) -> PerExampleLoss:
        if self._loss is None:
            raise RuntimeError(f"{self.name}: call bind(model, loss) before estimating")
        return self._loss

    def bind(self, model: nn.Module, loss: PerExampleLoss) -> GradientEstimator:
        """Attach the model and per-example loss; subclasses set up their state here."""
        self._model = model
        self._loss = loss
        return self

    @abstractmethod
    def estimate(self, batch: Batch, generator: torch.Generator) -> Estimate:
        """One estimate of the batch-loss gradient; must not change the estimator's state."""

    def estimate_draws(self, batch: Batch, draws: int, generator: torch.Generator) -> Draws:
        """R independent estimates at the current state, stacked along a new leading axis.

        This default calls `estimate` R times; estimators that can draw in one vectorised pass
        override it.
        """
        if draws < 1:
            raise EstimatorError(f"{self.name}: draws must be >= 1, got {draws}")
        estimates = [self.estimate(batch, generator) for _ in range(draws)]
        grads = {n: torch.stack([e.grads[n] for e in estimates]) for n in estimates[0].grads}
        return Draws(grads=grads, loss=estimates[0].loss)

    def update(self, estimate: Estimate) -> None:
        """Advance the estimator's state after an optimisation step (default: stateless)."""

    def prime_steps(self) -> int:
        """Steps of `estimate` + `update` at fixed parameters before quality draws.

        Stateful estimators (predictors, subspaces) are measured at a fitted state: the quality
        protocol first runs this many steps on fresh batches without changing the parameters.
        Stateless estimators need none.
        """
        return 0

    def phase(self) -> str:
        """A label for the current kind of step (e.g. warm-up vs projected).

        Steps in one phase cost the same FLOPs, so the training loop counts FLOPs once per
        phase. Stateless estimators have a single phase.
        """
        return "step"


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
