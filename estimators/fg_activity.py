"""Activity perturbation: one isotropic guess per example at every Linear/Conv2d output."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from estimators.forward_gradient import TANGENTS, ForwardGradient, noise_param
from estimators.forward_mode import LAYERS, Guess, noise
from estimators.routing import check_plain


class ActivityPerturbation(ForwardGradient):
    """Forward gradient with guesses in every layer's pre-activation space, all in one pass.

    Formula: for each example b and each Linear/Conv2d layer l with output s_l, draw
    u_{l,b} with E[u u^T] = I (entries N(0,1), or random signs with `noise=rademacher`), add
    it to the tangent of s_l, read d_b = sum_l <dl_b/ds_l, u_{l,b}> from the per-example
    losses of that one forward pass, and set g_hat_{W_l} = (1/B) sum_b d_b u_{l,b} a_{l-1,b}^T
    (summed over tokens or positions; bias: (1/B) sum_b d_b u_{l,b}). Parameters outside
    Linear/Conv2d layers (LayerNorm affine, position embeddings) get weight-perturbation
    directions in the same pass (kind "weight" in `guess_kinds`). `tangents` averages T guesses.
    Unbiased: yes, E[d_b u_{l,b}] = dl_b/ds_l because the guesses of different layers, examples
    and tangents are independent with identity covariance (cross terms vanish in expectation).
    Cost: FLOP ratio to backprop 1.00 on mlp-mnist1d, vit-digits and bagnet-digits (measured by
    `measurements.flops.count_work`, one estimate at the defaults on the task's batch against
    one backprop step): the forward-mode pass carries the primal and the activation tangent
    (about 2 forward-pass units) and the outer products mean_b d_b u a^T cost what backprop's
    weight-gradient products cost (1 unit), so about 3 units like backprop, not 2; elementwise
    work 3.1 / 2.6 / 6.8 x backprop's (the guesses' random numbers, the tangent arithmetic).
    Every perturbed layer's input and guess is kept until the derivatives are known
    (activation memory like backprop's).
    Reference: Ren, Kornblith, Liao and Hinton, "Scaling Forward Gradient With Local Losses",
    ICLR 2023 (activity perturbation); Baydin et al., "Gradients without Backpropagation", 2022.
    """

    name = "fg-activity"
    unbiased = True
    params = (TANGENTS, noise_param("gaussian"))

    def plan(self, model: nn.Module) -> dict[str, str]:
        kinds = {}
        for name, module in model.named_modules():
            if isinstance(module, LAYERS) and any(
                p.requires_grad for p in module.parameters(recurse=False)
            ):
                check_plain(name, module, "activity perturbation")
                kinds[name] = "isotropic"
        return kinds

    def guesses(self, count: int, generator: torch.Generator) -> dict[str, Guess]:
        def isotropic(s: Tensor, n: int) -> Tensor:
            return noise((n, *s.shape), self.noise, generator, s.dtype, s.device)

        return {name: isotropic for name in self._plan}
