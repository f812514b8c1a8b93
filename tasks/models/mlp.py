"""Multi-layer perceptron: the W-perp paper's setting (3 hidden layers of 128, ReLU)."""

from __future__ import annotations

from itertools import pairwise

from torch import Tensor, nn

from tasks.links import ConsumerLink, activation


class MLP(nn.Module):
    """Flatten -> `depth` x (Linear -> activation) -> Linear head.

    Hidden layer i is `hidden.i`; its output is read only by `hidden.{i+1}.weight` (or
    `head.weight` for the last one), which `consumer_links` exposes.
    """

    def __init__(
        self,
        in_features: int,
        classes: int,
        *,
        width: int = 128,
        depth: int = 3,
        act: str = "relu",
    ) -> None:
        super().__init__()
        if width < 1 or depth < 0:
            raise ValueError(f"MLP needs width >= 1 and depth >= 0, got {width}, {depth}")
        sizes = [in_features] + [width] * depth
        self.act_name = act
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        self.act = activation(act)
        self.head = nn.Linear(sizes[-1], classes)

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)  # (B, in_features)
        for layer in self.hidden:
            h = self.act(layer(h))  # (B, width)
        return self.head(h)  # (B, classes)

    def consumer_links(self) -> tuple[ConsumerLink, ...]:
        readers = [f"hidden.{i + 1}.weight" for i in range(len(self.hidden) - 1)] + ["head.weight"]
        return tuple(
            ConsumerLink(f"hidden.{i}", reader, self.act_name) for i, reader in enumerate(readers)
        )
