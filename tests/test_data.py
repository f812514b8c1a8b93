"""Data loaders: embedded sets' shapes and normalisation; real file formats on tiny files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from tasks.data import DATASETS, DataSource, Splits, embedded, load
from tasks.data.files import cifar10, fashion_mnist, mnist
from tasks.errors import DataError
from tests.stand_in_data import write_cifar10, write_idx, write_mnist

# loader, input shape, classes, train size, val size, dims the train statistics are taken over
EMBEDDED = [
    (embedded.digits, (1, 8, 8), 10, 1437, 360, (0, 2, 3)),
    (embedded.digits_one_vs_rest, (64,), 2, 1437, 360, (0,)),
    (embedded.mnist1d, (40,), 10, 4000, 1000, (0, 1)),
    (embedded.breast_cancer, (30,), 2, 455, 114, (0,)),
    (embedded.diabetes_binary, (10,), 2, 353, 89, (0,)),
    (embedded.synthetic20, (20,), 2, 800, 200, (0,)),
]
EMBEDDED_IDS = [loader.__name__ for loader, *_ in EMBEDDED]
FILE_LOADERS = [
    (mnist, "MNIST", "train-images-idx3-ubyte"),
    (fashion_mnist, "FashionMNIST", "train-images-idx3-ubyte"),
    (cifar10, "CIFAR-10", "cifar-10-batches-py"),
]
FILE_IDS = [name for _, name, _ in FILE_LOADERS]


@pytest.mark.parametrize(
    ("loader", "shape", "classes", "n_train", "n_val", "dims"), EMBEDDED, ids=EMBEDDED_IDS
)
def test_embedded_shapes_labels_and_standardisation(
    loader: Callable[[], Splits],
    shape: tuple[int, ...],
    classes: int,
    n_train: int,
    n_val: int,
    dims: tuple[int, ...],
) -> None:
    splits = loader()
    assert splits.input_shape == shape
    assert splits.classes == classes
    assert splits.x_train.shape == (n_train, *shape)
    assert splits.x_val.shape == (n_val, *shape)
    assert splits.x_train.dtype == splits.x_val.dtype == torch.float32
    assert splits.y_train.dtype == splits.y_val.dtype == torch.int64
    assert splits.y_train.shape == (n_train,)
    assert splits.y_val.shape == (n_val,)
    for y in (splits.y_train, splits.y_val):
        assert set(y.tolist()) == set(range(classes))
    mean = splits.x_train.mean(dim=dims)
    std = splits.x_train.std(dim=dims, correction=0)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4)
    constant = std == 0  # features constant on the train split keep scale 1 and stay at 0
    assert torch.allclose(std[~constant], torch.ones_like(std[~constant]), atol=1e-4)


@pytest.mark.parametrize("loader", [entry[0] for entry in EMBEDDED], ids=EMBEDDED_IDS)
def test_embedded_is_deterministic_and_cached(loader: Callable[[], Splits]) -> None:
    fresh = loader.__wrapped__()  # type: ignore[attr-defined]
    cached = loader()
    assert cached is loader()
    for field in ("x_train", "y_train", "x_val", "y_val"):
        assert torch.equal(getattr(fresh, field), getattr(cached, field))


def test_diabetes_labels_are_balanced() -> None:
    splits = embedded.diabetes_binary()
    for y in (splits.y_train, splits.y_val):
        assert abs(y.float().mean().item() - 0.5) < 0.05


def test_digits_one_vs_rest_positive_fraction() -> None:
    splits = embedded.digits_one_vs_rest()
    for y in (splits.y_train, splits.y_val):
        assert 0.08 < y.float().mean().item() < 0.12
    positives = [
        int(loaded.y_train.sum() + loaded.y_val.sum())
        for loaded in (splits, embedded.digits_one_vs_rest(3))
    ]
    assert positives == [182, 183]  # ones and threes among scikit-learn's 1797 digits


def test_splits_to_and_registry() -> None:
    splits = load("digits")
    assert splits is embedded.digits()
    moved = splits.to(torch.device("cpu"))
    assert moved.classes == 10 and moved.input_shape == (1, 8, 8)
    assert torch.equal(moved.x_val, splits.x_val)
    assert set(DATASETS) == {
        "digits",
        "digits-1-vs-rest",
        "mnist1d",
        "breast-cancer",
        "diabetes",
        "synthetic20",
        "mnist",
        "fashion-mnist",
        "cifar10",
    }


def _unstandardise(x: Tensor, train_pixels: np.ndarray) -> np.ndarray:
    """Pixels (0..255) back from standardised images, with stats recomputed from `train_pixels`."""
    values = train_pixels / 255.0  # (N, C, H, W)
    mean = values.mean(axis=(0, 2, 3))[None, :, None, None]
    std = values.std(axis=(0, 2, 3))[None, :, None, None]
    return (x.double().numpy() * std + mean) * 255.0


@pytest.mark.parametrize(("loader", "folder"), [(mnist, "MNIST"), (fashion_mnist, "FashionMNIST")])
def test_idx_files_are_read(
    tmp_path: Path, loader: Callable[[DataSource], Splits], folder: str
) -> None:
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    val_images = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    train_labels = np.array([0, 3, 9, 1, 5, 7], dtype=np.uint8)
    val_labels = np.array([2, 8, 4, 6], dtype=np.uint8)
    write_mnist(tmp_path, folder, (train_images, train_labels), (val_images, val_labels))

    splits = loader(DataSource(root=tmp_path))

    assert splits.classes == 10 and splits.input_shape == (1, 28, 28)
    assert splits.x_train.dtype == torch.float32
    assert splits.y_train.tolist() == train_labels.tolist()
    assert splits.y_val.tolist() == val_labels.tolist()
    train_pixels = train_images[:, None]  # (N, 1, 28, 28)
    np.testing.assert_allclose(
        _unstandardise(splits.x_train, train_pixels), train_pixels, atol=1e-3
    )
    np.testing.assert_allclose(
        _unstandardise(splits.x_val, train_pixels), val_images[:, None], atol=1e-3
    )


def _cifar_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3, 32, 32) uint8: red in 192..255, green in 0..63, blue in 96..159."""
    low = np.array([192, 0, 96])[None, :, None, None]
    return (low + rng.integers(0, 64, (n, 3, 32, 32))).astype(np.uint8)


def test_cifar10_pickles_are_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train_images = _cifar_images(rng, 10)
    train_labels = [4, 0, 9, 2, 7, 1, 3, 8, 5, 6]
    val_images = _cifar_images(rng, 3)
    val_labels = [3, 1, 4]
    write_cifar10(tmp_path, (train_images, train_labels), (val_images, val_labels))

    splits = cifar10(DataSource(root=tmp_path))

    assert splits.classes == 10 and splits.input_shape == (3, 32, 32)
    assert splits.y_train.tolist() == train_labels
    assert splits.y_val.tolist() == val_labels
    mean = splits.x_train.mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.zeros(3), atol=1e-4)
    train_pixels = _unstandardise(splits.x_train, train_images)
    assert train_pixels[:, 0].min() > 191.5  # channel 0 is red, channel 1 green
    assert train_pixels[:, 1].max() < 63.5
    np.testing.assert_allclose(train_pixels, train_images, atol=1e-3)
    np.testing.assert_allclose(_unstandardise(splits.x_val, train_images), val_images, atol=1e-3)


@pytest.mark.parametrize(("loader", "name", "_expected"), FILE_LOADERS, ids=FILE_IDS)
def test_no_root_asks_for_data_root(
    loader: Callable[[DataSource], Splits], name: str, _expected: str
) -> None:
    with pytest.raises(DataError, match="--data-root") as raised:
        loader(DataSource())
    assert str(raised.value).startswith(name)


@pytest.mark.parametrize(("loader", "name", "_expected"), FILE_LOADERS, ids=FILE_IDS)
def test_missing_root_suggests_download(
    tmp_path: Path, loader: Callable[[DataSource], Splits], name: str, _expected: str
) -> None:
    root = tmp_path / "absent"
    with pytest.raises(DataError, match="does not exist") as raised:
        loader(DataSource(root=root))
    message = str(raised.value)
    assert str(root) in message and "--download" in message and name in message
    assert "\n" not in message
    assert not root.exists()


@pytest.mark.parametrize(("loader", "name", "expected"), FILE_LOADERS, ids=FILE_IDS)
def test_empty_root_names_missing_files(
    tmp_path: Path, loader: Callable[[DataSource], Splits], name: str, expected: str
) -> None:
    with pytest.raises(DataError, match="--download") as raised:
        loader(DataSource(root=tmp_path))
    message = str(raised.value)
    assert expected in message and name in message
    assert "\n" not in message


def test_partial_mnist_names_only_missing_files(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", 2051, np.zeros((1, 28, 28), dtype=np.uint8))
    write_idx(raw / "train-labels-idx1-ubyte", 2049, np.zeros(1, dtype=np.uint8))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte") as raised:
        mnist(DataSource(root=tmp_path))
    assert "train-images" not in str(raised.value)


def test_load_rejects_unknown_name() -> None:
    with pytest.raises(DataError, match="unknown data set 'nope'") as raised:
        load("nope")
    assert "digits" in str(raised.value) and "cifar10" in str(raised.value)


def test_load_file_backed_without_source_asks_for_data_root() -> None:
    with pytest.raises(DataError, match="--data-root"):
        load("mnist")
