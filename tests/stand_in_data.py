"""Tiny data sets in the real on-disk formats, written by the tests themselves."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, magic: int, data: np.ndarray) -> None:
    """An uncompressed IDX file: big-endian int32 magic and sizes, then the uint8 values."""
    header = struct.pack(f">{1 + data.ndim}i", magic, *data.shape)
    path.write_bytes(header + data.astype(np.uint8).tobytes())


def write_mnist(
    root: Path,
    folder: str,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
) -> None:
    """(images (N, 28, 28), labels (N,)) pairs as `root/folder/raw/*-ubyte`, MNIST's layout."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in (("train", train), ("t10k", val)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", 2051, images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", 2049, labels)


def _write_pickle(path: Path, content: dict[bytes, object]) -> None:
    with path.open("wb") as f:
        pickle.dump(content, f, protocol=2)


def write_cifar10(
    root: Path, train: tuple[np.ndarray, list[int]], val: tuple[np.ndarray, list[int]]
) -> None:
    """(images (N, 3, 32, 32) uint8, labels) as `root/cifar-10-batches-py/`: 5 train batches."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = train
    for i, part in enumerate(np.array_split(np.arange(len(labels)), 5)):
        rows = images[part].reshape(len(part), 3072)  # R plane, G plane, B plane
        batch = {b"batch_label": b"training batch", b"data": rows,
                 b"labels": [labels[j] for j in part]}  # fmt: skip
        _write_pickle(folder / f"data_batch_{i + 1}", batch)
    _write_pickle(
        folder / "test_batch", {b"data": val[0].reshape(len(val[1]), 3072), b"labels": val[1]}
    )
    _write_pickle(
        folder / "batches.meta", {b"label_names": [b"airplane", b"automobile"], b"num_vis": 3072}
    )


def write_all(root: Path, n_train: int = 20, n_val: int = 10, seed: int = 0) -> None:
    """Random MNIST, Fashion-MNIST and CIFAR-10 stand-ins under `root`."""
    rng = np.random.default_rng(seed)

    def labels(n: int) -> np.ndarray:
        return np.arange(n) % 10

    for folder in ("MNIST", "FashionMNIST"):
        write_mnist(
            root,
            folder,
            (rng.integers(0, 256, (n_train, 28, 28)), labels(n_train)),
            (rng.integers(0, 256, (n_val, 28, 28)), labels(n_val)),
        )
    write_cifar10(
        root,
        (rng.integers(0, 256, (n_train, 3, 32, 32)).astype(np.uint8), labels(n_train).tolist()),
        (rng.integers(0, 256, (n_val, 3, 32, 32)).astype(np.uint8), labels(n_val).tolist()),
    )
