"""The three model families: MLP, BagNet and ViT, all differentiable in forward and reverse mode."""

from tasks.models.bagnet import BagNet
from tasks.models.mlp import MLP
from tasks.models.vit import ViT

__all__ = ["MLP", "BagNet", "ViT"]
