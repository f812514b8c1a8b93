"""What every forward-gradient estimator shares: its parameters, its plan, its batched draws.

A subclass decides, at `bind`, how each layer is perturbed (`plan`: module name -> kind) and,
per pass, how activity guesses are drawn (`guesses`). Everything else (one tangent pass for all
tangents and draws, the outer products, averaging the `tangents` guesses of one step) is here
and in `estimators.forward_mode`.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor, nn

from estimators.base import (
    Batch,
    Draws,
    Estimate,
    GradientEstimator,
    PerExampleLoss,
    trainable_parameters,
)
from estimators.errors import EstimatorError
from estimators.forward_mode import (
    NOISE,
    Guess,
    PassResult,
    SeededDirections,
    forward_pass,
    gradients,
    owners,
)
from estimators.params import Param
from estimators.seeds import host_seeds

TANGENTS = Param(
    name="tangents",
    kind=int,
    default=1,
    low=1,
    help="guesses averaged per step, all carried by one batched forward pass",
)

KINDS = ("consumer", "isotropic", "weight")


def noise_param(default: str) -> Param:
    """The `noise` parameter: the distribution of the entries of guesses and directions."""
    return Param(
        name="noise",
        kind=str,
        default=default,
        choices=NOISE,
        help="entries of guesses/directions: N(0,1) or random signs (both mean 0, variance 1)",
    )


class ForwardGradient(GradientEstimator):
    """Base class: one forward pass with n = draws x tangents tangents; no backward pass.

    `plan(model)` maps module names to "isotropic" or "consumer" (activity guesses at that
    module's output); every trainable parameter outside those modules gets a weight direction
    ("weight"). `guess_kinds()` reports the plan by layer, `Estimate.diagnostics` its counts.
    """

    params = (TANGENTS, noise_param("gaussian"))

    def bind(self, model: nn.Module, loss: PerExampleLoss) -> ForwardGradient:
        super().bind(model, loss)
        self._params = trainable_parameters(model)
        self._plan = self.plan(model)
        self._modules = {name: m for name, m in model.named_modules() if name in self._plan}
        perturbed = {
            f"{name}.{local}"
            for name, module in self._modules.items()
            for local, _ in module.named_parameters(recurse=False)
        }
        self._weighted = {name for name in self._params if name not in perturbed}
        self._owners = owners(model, self._weighted)
        self._kinds = dict(self._plan)
        for prefix, module in model.named_modules():
            for local, _ in module.named_parameters(recurse=False):
                if (f"{prefix}.{local}" if prefix else local) in self._weighted:
                    self._kinds.setdefault(prefix or local, "weight")
        counts = list(self._kinds.values())
        self._diagnostics = {f"{kind}_layers": float(counts.count(kind)) for kind in KINDS}
        return self

    @abstractmethod
    def plan(self, model: nn.Module) -> dict[str, str]:
        """Module name -> "isotropic" | "consumer" for the layers that get activity guesses."""

    def guesses(self, count: int, generator: torch.Generator) -> dict[str, Guess]:
        """One guess function per planned layer, drawing from `generator` (default: none)."""
        return {}

    def guess_kinds(self) -> dict[str, str]:
        """Layer (module) name -> "consumer" | "isotropic" | "weight", for every trained layer."""
        return dict(self._kinds)

    def estimate(self, batch: Batch, generator: torch.Generator) -> Estimate:
        grads, loss = self._draw(batch, 1, generator)
        return Estimate({k: g[0] for k, g in grads.items()}, loss, dict(self._diagnostics))

    def estimate_draws(self, batch: Batch, draws: int, generator: torch.Generator) -> Draws:
        """R draws in the same single pass: n = R x tangents tangents at once."""
        if draws < 1:
            raise EstimatorError(f"{self.name}: draws must be >= 1, got {draws}")
        grads, loss = self._draw(batch, draws, generator)
        return Draws(grads=grads, loss=loss)

    def tangent_pass(self, batch: Batch, draws: int, generator: torch.Generator) -> PassResult:
        """The forward pass alone: n = draws x tangents tangents, per-example derivatives read,
        no weight estimate formed yet (what the cost benchmark times against a forward)."""
        count = draws * self.tangents
        directions = None
        if self._weighted:
            [seed] = host_seeds(generator, 1)  # no wait for the device (estimators.seeds)
            directions = SeededDirections(self._owners, count, seed, self.noise)
        guesses = {n: (self._modules[n], g) for n, g in self.guesses(count, generator).items()}
        return forward_pass(self.model, self.loss, batch, count, guesses, directions)

    def _draw(
        self, batch: Batch, draws: int, generator: torch.Generator
    ) -> tuple[dict[str, Tensor], Tensor]:
        result = self.tangent_pass(batch, draws, generator)
        grads = gradients(result, self._params)
        if self.tangents > 1:
            grads = {k: g.unflatten(0, (draws, self.tangents)).mean(1) for k, g in grads.items()}
        return grads, result.loss.detach()
