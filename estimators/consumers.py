"""A layer's consumer weight as seen from one site of the layer's output, for guided guesses.

A producer (Linear or Conv2d) outputs pre-activations s; a = phi(s) is read by one consumer
weight only (`model.consumer_links()`). A site is one position of s with its own feature
vector: an example (Linear on (B, in)), an example's token (Linear on (B, T, in)), or an
example's spatial position (Conv2d, channels as features). At a site the consumer acts as a
matrix W_site (rows, in): the Linear weight itself, or for a conv consumer the kernel taps
stacked as (out * kh * kw, in): the block of the conv's Jacobian that reads this position.
Guesses are drawn independently per site, so for a conv consumer they ignore that neighbouring
positions share output noise (and that border positions are read by fewer taps); their
covariance per site is W_site^T W_site, the diagonal block of the exact transposed-conv guess.

`factor` returns C (r, in) with C^T C = W_site^T W_site and r = min(rows, in) (W_site itself,
or the R of its QR decomposition when rows > in): C diag(phi'(s)) has the same right singular
vectors and values as W_site diag(phi'(s)), at a smaller size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from estimators.errors import EstimatorError
from estimators.forward_mode import LAYERS
from tasks.links import ConsumerLink


def _relu(s: Tensor) -> Tensor:
    return (s > 0).to(s.dtype)


def _gelu(s: Tensor) -> Tensor:
    return torch.ops.aten.gelu_backward(torch.ones_like(s), s)


def _tanh(s: Tensor) -> Tensor:
    return 1 - torch.tanh(s) ** 2


DERIVATIVES: dict[str, Callable[[Tensor], Tensor]] = {"relu": _relu, "gelu": _gelu, "tanh": _tanh}


@dataclass(frozen=True)
class Consumer:
    """A validated consumer link: producer module, consumer weight name, activation."""

    producer: str
    weight: str
    activation: str
    conv: bool  # the producer is a Conv2d: features are channels (dim 1)

    def factor(self, weight: Tensor) -> Tensor:
        """C (r, in) with C^T C = W_site^T W_site."""
        site = weight if weight.dim() == 2 else weight.permute(0, 2, 3, 1).flatten(0, 2)
        if site.shape[0] <= site.shape[1]:
            return site
        return torch.linalg.qr(site, mode="r").R

    def sites(self, s: Tensor) -> Tensor:
        """The producer output (B, *, in) or (B, C, H, W) as site rows (S, in)."""
        return s.movedim(1, -1).reshape(-1, s.shape[1]) if self.conv else s.reshape(-1, s.shape[-1])

    def unsites(self, u: Tensor, s: Tensor) -> Tensor:
        """Guesses per site (n, S, in) back to the producer's output layout (n, *s.shape)."""
        n = u.shape[0]
        if self.conv:
            return u.reshape(n, s.shape[0], *s.shape[2:], s.shape[1]).movedim(-1, 2)
        return u.reshape(n, *s.shape)


def consumers(model: nn.Module) -> dict[str, Consumer]:
    """The model's consumer links whose producer is a Linear/Conv2d, by producer name."""
    links: tuple[ConsumerLink, ...] = (
        model.consumer_links() if hasattr(model, "consumer_links") else ()
    )
    modules = dict(model.named_modules())
    weights = dict(model.named_parameters())
    found = {}
    for link in links:
        producer = modules.get(link.producer)
        weight = weights.get(link.consumer)
        if not isinstance(producer, LAYERS) or weight is None or weight.dim() not in (2, 4):
            raise EstimatorError(f"consumer link {link} does not name a Linear/Conv2d and a weight")
        if link.activation not in DERIVATIVES:
            raise EstimatorError(
                f"consumer link {link}: activation {link.activation!r} has no derivative; "
                f"valid: {', '.join(DERIVATIVES)}"
            )
        found[link.producer] = Consumer(
            link.producer, link.consumer, link.activation, isinstance(producer, nn.Conv2d)
        )
    return found
