"""Weight perturbation: the forward gradient of Baydin et al. over all parameters at once."""

from __future__ import annotations

from torch import nn

from estimators.forward_gradient import TANGENTS, ForwardGradient, noise_param


class WeightPerturbation(ForwardGradient):
    """Forward gradient along random parameter directions, regenerated from a seed.

    Formula: v ~ N(0, I_n) over all n parameters; g_hat = (g . v) v, where g . v = dL/dtheta . v
    is read from one forward pass carrying v as the parameters' tangent; with `tangents` = T,
    g_hat = (1/T) sum_t (g . v_t) v_t from one pass carrying T tangents. Each module's
    directions are drawn by a seeded generator just before it runs and dropped after, then
    regenerated for the outer product, so no more than one layer's directions are ever stored.
    Unbiased: yes, E[v v^T] = I gives E[(g . v) v] = g. Second moment
    E||g_hat||^2 = (n + 2)||g||^2 for Gaussian v (n ||g||^2 for random signs), so the relative
    variance is n + 1: useless for large n, the baseline every guided guess improves on.
    Cost: about 3 forward-pass units per tangent (the primal, the activation tangent W a_dot and
    the weight tangent v a): FLOP ratio to backprop 1.00 on mlp-mnist1d, vit-digits and
    bagnet-digits (`measurements.flops.count_work`, one estimate at the defaults on the task's
    batch against one backprop step), plus drawing 2n random numbers (direction, then its
    replay): elementwise work 3.4 / 2.6 / 2.0 x backprop's. No activation is stored beyond the
    layer being computed.
    Reference: Baydin, Pearlmutter, Syme, Wood and Torr, "Gradients without Backpropagation",
    arXiv:2202.08587, 2022.
    """

    name = "fg-weight"
    unbiased = True
    params = (TANGENTS, noise_param("gaussian"))

    def plan(self, model: nn.Module) -> dict[str, str]:
        return {}
