"""Vision Transformer: patch embedding and pre-norm blocks, attention written out by hand.

`F.scaled_dot_product_attention` has no forward-mode AD on CPU, so attention is spelled as
softmax(q k^T / sqrt(d)) v, which `torch.func.jvp` differentiates on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tasks.links import ConsumerLink, activation


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"ViT dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, T, hd)
        scores = q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5  # (B, heads, T, T)
        y = scores.softmax(dim=-1) @ v  # (B, heads, T, hd)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))  # (B, T, D)


class FeedForward(nn.Module):
    """fc1 -> activation -> fc2; fc1's output is read only by fc2's weight."""

    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = activation(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, act: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_ratio * dim, act)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """(B, C, H, W) -> patches -> `depth` pre-norm blocks -> token mean -> LayerNorm -> head."""

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        in_channels: int,
        classes: int,
        *,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: int = 4,
        act: str = "gelu",
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"ViT image_size {image_size} is not divisible by patch {patch_size}")
        self.patch = patch_size
        self.act_name = act
        tokens = (image_size // patch_size) ** 2
        self.embed = nn.Linear(in_channels * patch_size**2, dim)
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, act) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        p = self.patch
        patches = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        z = self.embed(patches.reshape(b, (h // p) * (w // p), c * p * p)) + self.pos  # (B, T, D)
        for block in self.blocks:
            z = block(z)
        return self.head(self.norm(z.mean(dim=1)))  # (B, classes)

    def consumer_links(self) -> tuple[ConsumerLink, ...]:
        return tuple(
            ConsumerLink(f"blocks.{i}.mlp.fc1", f"blocks.{i}.mlp.fc2.weight", self.act_name)
            for i in range(len(self.blocks))
        )
