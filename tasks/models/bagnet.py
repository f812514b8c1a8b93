"""BagNet: a bag of local features. Each output position sees one small patch only.

Unpadded 3x3 convolutions set the receptive field (1 + 2 x their number), then 1x1
convolutions mix channels per position, a 1x1 head gives per-position class logits, and the
logits are averaged over positions (Brendel and Bethge, ICLR 2019, shrunk to benchmark size).
"""

from __future__ import annotations

from torch import Tensor, nn

from tasks.links import ConsumerLink, activation


class BagNet(nn.Module):
    """(B, C, H, W) -> 3x3 convs (no padding) -> 1x1 convs -> 1x1 head -> mean over positions.

    `receptive_field` must be odd: (rf - 1) / 2 unpadded 3x3 convolutions, so each position's
    logits depend on an rf x rf patch. `groups` > 0 adds GroupNorm after each convolution
    (never BatchNorm: its train mode breaks forward-mode AD); with a norm in between, a layer's
    output no longer feeds a single weight, so `consumer_links` is then empty.
    """

    def __init__(
        self,
        in_channels: int,
        classes: int,
        *,
        width: int = 64,
        receptive_field: int = 5,
        pointwise: int = 2,
        groups: int = 0,
        act: str = "relu",
    ) -> None:
        super().__init__()
        if receptive_field < 1 or receptive_field % 2 == 0:
            raise ValueError(f"BagNet receptive_field must be odd and >= 1, got {receptive_field}")
        spatial = (receptive_field - 1) // 2
        kernels = [3] * spatial + [1] * pointwise
        if not kernels:
            kernels = [1]
        channels = [in_channels] + [width] * len(kernels)
        self.act_name = act
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, k) for a, b, k in zip(channels, channels[1:], kernels, strict=False)
        )
        self.norms = nn.ModuleList(
            nn.GroupNorm(groups, width) if groups else nn.Identity() for _ in kernels
        )
        self.act = activation(act)
        self.head = nn.Conv2d(width, classes, 1)
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        h = x  # (B, C, H, W)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = self.act(norm(conv(h)))  # (B, width, H', W'): H' shrinks by 2 per 3x3 conv
        return self.head(h).mean(dim=(2, 3))  # (B, classes, H', W') -> (B, classes)

    def consumer_links(self) -> tuple[ConsumerLink, ...]:
        if self.groups:
            return ()
        readers = [f"convs.{i + 1}.weight" for i in range(len(self.convs) - 1)] + ["head.weight"]
        return tuple(
            ConsumerLink(f"convs.{i}", reader, self.act_name) for i, reader in enumerate(readers)
        )
