"""Which weight reads each layer's output: what forward-gradient guesses aim with.

The one declaration of the model surface that estimators use beyond parameters: a model may
define `consumer_links() -> tuple[ConsumerLink, ...]`; estimators import this module and no
other part of `tasks`' models.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class ConsumerLink:
    """Module `producer` outputs pre-activations s; a = activation(s) is read by one weight only.

    `consumer` names that weight's parameter (as in `model.named_parameters()`); it is a Linear
    weight (out, in) or a Conv2d kernel (out, in, kh, kw). Layers without a link have no single
    known consumer (a residual stream, a normalisation, the head) and get isotropic guesses.
    """

    producer: str
    consumer: str
    activation: str


def activation(name: str) -> nn.Module:
    """The activation module for a name in `ACTIVATIONS`."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
