"""The W^T guess: activity guesses aimed through the weight that reads the layer's output."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from estimators.consumers import DERIVATIVES, Consumer, consumers
from estimators.fg_activity import ActivityPerturbation
from estimators.forward_gradient import TANGENTS, noise_param
from estimators.forward_mode import Guess, noise


class WTransposeGuess(ActivityPerturbation):
    """Activity perturbation whose guess at a layer is its consumer weight transposed times noise.

    Formula: for a layer whose output s (activation a = phi(s)) is read only by the weight W of
    the next layer (`model.consumer_links()`: an MLP's hidden layers, a ViT's fc1 -> fc2,
    consecutive BagNet convs), the guess per site is u = phi'(s) * (W^T eps),
    eps ~ (0, I_rows) (`estimators.consumers`: W is the per-site matrix of a conv kernel).
    The true dl/ds = phi'(s) * W^T dl/dz lies in that space. Layers without a consumer link get
    isotropic guesses and the rest is `fg-activity` (one pass, outer products).
    Unbiased: no. The guess covariance D W^T W D (D = diag phi'(s)) is not the identity, so
    E[g_hat] = D W^T W D dl/ds: directions W^T W stretches are over-weighted.
    Cost: as `fg-activity` (about 3 forward-pass units: the primal, the tangent and the outer
    products) plus one product of the noise with W per guided layer (one more pass through the
    consumer, on the tangents only): FLOP ratio to backprop 1.30 on mlp-mnist1d, 1.11 on
    vit-digits, 1.15 on bagnet-digits (`measurements.flops.count_work`, one estimate at the
    defaults on the task's batch against one backprop step).
    Reference: Singhal, Chen, Ziyin, Zelikman, Lerner, Rajpurkar and Ganguli, "How to guess a
    gradient", arXiv:2312.04709, 2023.
    """

    name = "fg-wt"
    unbiased = False
    params = (TANGENTS, noise_param("gaussian"))

    def plan(self, model: nn.Module) -> dict[str, str]:
        kinds = super().plan(model)
        self._consumers = {p: c for p, c in consumers(model).items() if p in kinds}
        kinds.update({producer: "consumer" for producer in self._consumers})
        return kinds

    def guesses(self, count: int, generator: torch.Generator) -> dict[str, Guess]:
        guesses = super().guesses(count, generator)
        weights = dict(self.model.named_parameters())
        for producer, consumer in self._consumers.items():
            factor = consumer.factor(weights[consumer.weight].detach())  # (r, in)
            guesses[producer] = self._guided(consumer, factor, generator)
        return guesses

    def _guided(self, consumer: Consumer, factor: Tensor, generator: torch.Generator) -> Guess:
        def guess(s: Tensor, n: int) -> Tensor:
            rows = consumer.sites(s)  # (S, in)
            slope = DERIVATIVES[consumer.activation](rows)  # (S, in): phi'(s) per site
            return consumer.unsites(self.site_guess(factor, slope, n, generator), s)

        return guess

    def site_guess(
        self, factor: Tensor, slope: Tensor, n: int, generator: torch.Generator
    ) -> Tensor:
        """Guesses (n, S, in) for sites with activation slopes `slope` (S, in), C = `factor`."""
        eps = noise(
            (n, slope.shape[0], factor.shape[0]), self.noise, generator, slope.dtype, slope.device
        )  # (n, S, r)
        return slope * (eps @ factor)  # phi'(s) * C^T eps: same covariance as W^T eps
