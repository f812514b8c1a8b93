"""Gradient-quality statistics of R draws against the exact gradient, per layer and in total.

For draws g_1..g_R of an estimator and the exact batch gradient g (the protocol's definitions):
- cosine: mean_r cos(g_r, g), with a normal 95% interval over the draws;
- relative variance: sum_r ||g_r - m||^2 / ((R - 1) ||g||^2), m = mean_r g_r;
- relative bias: sqrt(max(0, ||m - g||^2 - var_abs / R)) / ||g||, the finite-R noise floor
  var_abs / R removed (var_abs = sum_r ||g_r - m||^2 / (R - 1));
- relative MSE: mean_r ||g_r - g||^2 / ||g||^2, with a normal 95% interval over the draws.
A layer is a module: parameters named `a.b.weight` and `a.b.bias` form layer `a.b`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def layer_of(param_name: str) -> str:
    """The module a parameter belongs to (`hidden.0.weight` -> `hidden.0`; `pos` -> `pos`)."""
    return param_name.rsplit(".", 1)[0] if "." in param_name else param_name


def _flat(grads: dict[str, Tensor], names: list[str], lead: int) -> Tensor:
    return torch.cat(
        [grads[n].reshape(lead, -1) if lead else grads[n].reshape(-1) for n in names], -1
    )


def _interval(samples: Tensor) -> tuple[float, float, float]:
    mean = samples.mean().item()
    half = Z95 * samples.std().item() / math.sqrt(len(samples)) if len(samples) > 1 else math.nan
    return mean, mean - half, mean + half


def statistics(draws: Tensor, exact: Tensor) -> dict[str, Any]:
    """Quality statistics of `draws` (R, d) against `exact` (d,), computed in float64."""
    draws, exact = draws.double(), exact.double()
    r = draws.shape[0]
    norm2 = exact.pow(2).sum()
    mean = draws.mean(dim=0)
    var_abs = (draws - mean).pow(2).sum() / (r - 1) if r > 1 else torch.tensor(math.nan)
    bias2 = (mean - exact).pow(2).sum() - var_abs / r
    cos = (draws @ exact) / (draws.norm(dim=1) * exact.norm()).clamp_min(1e-300)
    cosine, cos_lo, cos_hi = _interval(cos)
    mse, mse_lo, mse_hi = _interval((draws - exact).pow(2).sum(dim=1) / norm2)
    return {
        "cosine": cosine,
        "cosine_lo": cos_lo,
        "cosine_hi": cos_hi,
        "rel_bias": math.sqrt(max(0.0, bias2.item())) / math.sqrt(norm2.item()),
        "rel_variance": (var_abs / norm2).item(),
        "rel_mse": mse,
        "rel_mse_lo": mse_lo,
        "rel_mse_hi": mse_hi,
        "draws": r,
    }


def quality_by_layer(draws: dict[str, Tensor], exact: dict[str, Tensor]) -> dict[str, dict]:
    """Statistics per layer and for the whole vector (`total`), keyed by layer name."""
    names = list(exact)
    r = next(iter(draws.values())).shape[0]
    layers: dict[str, list[str]] = {}
    for name in names:
        layers.setdefault(layer_of(name), []).append(name)
    out = {
        layer: statistics(_flat(draws, members, r), _flat(exact, members, 0))
        for layer, members in layers.items()
    }
    out["total"] = statistics(_flat(draws, names, r), _flat(exact, names, 0))
    return out
