"""The `Splits` every loader returns, where file-backed data lives, and shared preprocessing.

Every loader splits (or keeps the published split) and standardises with statistics of the train
split only, so nothing about the validation split leaks into training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

FEATURES = (0,)  # statistics per feature of (N, F) data
CHANNELS = (0, 2, 3)  # statistics per channel of (N, C, H, W) images
GLOBAL = (0, 1)  # one mean and std for all of (N, F) data


@dataclass(frozen=True, eq=False)
class Splits:
    """Train/validation tensors of one data set, already normalised.

    Loaders cache their results, so treat the tensors as read-only.
    """

    x_train: Tensor  # float32, (N, *input_shape)
    y_train: Tensor  # int64 class indices, (N,)
    x_val: Tensor
    y_val: Tensor
    classes: int

    def to(self, device: torch.device | str) -> Splits:
        """The same splits with all four tensors on `device`."""
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_val=self.x_val.to(device),
            y_val=self.y_val.to(device),
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. (1, 8, 8) or (40,)."""
        return tuple(self.x_train.shape[1:])


@dataclass(frozen=True)
class DataSource:
    """Where file-backed data sets live and whether they may be downloaded."""

    root: Path | None = None
    download: bool = False


def stratified_split(
    x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split 80/20 into (x_train, y_train, x_val, y_val), keeping class proportions; fixed seed."""
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0
    )
    return x_train, y_train, x_val, y_val


def standardise(x_train: Tensor, x_val: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Subtract the train mean and divide by the train std, both taken over `dims`.

    The std is the population std; where it is zero (a constant feature) the scale is 1.
    """
    mean = x_train.mean(dim=dims, keepdim=True)
    std = x_train.std(dim=dims, correction=0, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (x_train - mean) / std, (x_val - mean) / std


def make_splits(
    x_train: np.ndarray | Tensor,
    y_train: np.ndarray | Tensor,
    x_val: np.ndarray | Tensor,
    y_val: np.ndarray | Tensor,
    classes: int,
    dims: tuple[int, ...],
) -> Splits:
    """Convert to float32 inputs and int64 labels, standardise over `dims` with train stats."""
    x_train, x_val = standardise(
        torch.as_tensor(x_train, dtype=torch.float32),
        torch.as_tensor(x_val, dtype=torch.float32),
        dims,
    )
    return Splits(
        x_train=x_train,
        y_train=torch.as_tensor(y_train, dtype=torch.int64),
        x_val=x_val,
        y_val=torch.as_tensor(y_val, dtype=torch.int64),
        classes=classes,
    )
