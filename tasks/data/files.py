"""Image data sets read from a folder on disk (`DataSource.root`), downloaded only on request.

Every failure a user can fix (no root given, root or files missing) raises `DataError` with one
line that says what is missing and suggests `--data-root` or `--download`.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tasks.data.splits import CHANNELS, DataSource, Splits, make_splits
from tasks.errors import DataError, DataMissing

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"


def _root(source: DataSource, name: str) -> Path:
    """The data root; created when downloading, `DataError` when unset or missing otherwise."""
    if source.root is None:
        raise DataMissing(
            f"{name} needs --data-root (a folder that holds it, or where to put it with --download)"
        )
    root = Path(source.root)
    if source.download:
        root.mkdir(parents=True, exist_ok=True)
    elif not root.exists():
        raise DataMissing(
            f"data root {root} does not exist; pass --download to fetch {name} into it, "
            "or point --data-root at a folder that holds it"
        )
    return root


def _missing(name: str, folder: Path, files: Sequence[str]) -> DataMissing:
    """The error for `files` of data set `name` absent from `folder`."""
    return DataMissing(
        f"{name} not found: {folder} lacks {', '.join(files)}; pass --download to fetch it, "
        "or point --data-root at a folder that holds it"
    )


def _require(name: str, folder: Path, files: Sequence[str]) -> None:
    """Raise `DataError` naming whichever of `files` is not in `folder`."""
    missing = [file for file in files if not (folder / file).is_file()]
    if missing:
        raise _missing(name, folder, missing)


@contextmanager
def _not_found_as_data_error(name: str, folder: Path, files: Sequence[str]) -> Iterator[None]:
    """Turn torchvision's "Dataset not found" `RuntimeError` into a `DataError`."""
    try:
        yield
    except RuntimeError as err:
        if not str(err).startswith("Dataset not found"):
            raise
        raise _missing(name, folder, files) from err


def _malformed(name: str, problem: str, err: BaseException) -> DataError:
    """The error for files of data set `name` present but of the wrong format (`problem`)."""
    detail = "".join(str(err).splitlines()[:1]) or type(err).__name__
    return DataError(
        f"{name}: {problem} ({detail}); replace them, or remove them and pass --download"
    )


@contextmanager
def _download_error(name: str, root: Path) -> Iterator[None]:
    """Turn a failed download (no network, a refused mirror) into a `DataError`."""
    try:
        yield
    except OSError as err:
        raise DataError(
            f"could not download {name} into {root} ({err}); check the network, or put the "
            "files there yourself and drop --download"
        ) from None
    except RuntimeError as err:
        if not str(err).startswith("Error downloading"):
            raise
        raise DataError(
            f"could not download {name} into {root} (no network?); put the files there "
            "yourself and drop --download"
        ) from None


def _idx(folder: str, name: str, source: DataSource) -> Splits:
    """MNIST-format IDX files under `<root>/<folder>/raw/`, read through torchvision's dataset
    class of that name (imported here: it takes seconds, and most runs need no files)."""
    from torchvision import datasets

    dataset = getattr(datasets, folder)
    root = _root(source, name)
    raw = root / folder / "raw"
    if not source.download:
        _require(name, raw, IDX_FILES)
    with _not_found_as_data_error(name, raw, IDX_FILES), _download_error(name, root):
        try:
            train = dataset(root, train=True, download=source.download)
            val = dataset(root, train=False)
        except (AssertionError, ValueError, IndexError) as err:
            raise _malformed(name, f"{raw} does not hold MNIST-format IDX files", err) from None
        except RuntimeError as err:
            if str(err).startswith(("Dataset not found", "Error downloading")):
                raise
            raise _malformed(name, f"{raw} does not hold MNIST-format IDX files", err) from None
    return make_splits(
        train.data[:, None] / 255.0,  # (N, 1, 28, 28)
        train.targets,
        val.data[:, None] / 255.0,
        val.targets,
        classes=10,
        dims=CHANNELS,
    )


def mnist(source: DataSource) -> Splits:
    """MNIST digits from `<root>/MNIST/raw/` (uncompressed IDX files, no checksum).

    60000 train / 10000 val images (N, 1, 28, 28), pixels divided by 255, standardised with the
    train split's mean and std; 10 classes. Downloaded into `root` only if `source.download`.
    """
    return _idx("MNIST", "MNIST", source)


def fashion_mnist(source: DataSource) -> Splits:
    """Fashion-MNIST from `<root>/FashionMNIST/raw/` (uncompressed IDX files, no checksum).

    60000 train / 10000 val images (N, 1, 28, 28), pixels divided by 255, standardised with the
    train split's mean and std; 10 classes. Downloaded into `root` only if `source.download`.
    """
    return _idx("FashionMNIST", "FashionMNIST", source)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) of one CIFAR-10 pickle."""
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")
        # Each row is 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane.
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as err:  # unpickling fails in many ways (EOFError, UnpicklingError, ...)
        raise _malformed("CIFAR-10", f"{path} is not a python-format CIFAR-10 batch", err) from None
    if len(labels) != len(images):
        raise _malformed(
            "CIFAR-10", f"{path} is not a CIFAR-10 batch", ValueError("as many labels as images")
        )
    return images, labels


def cifar10(source: DataSource) -> Splits:
    """CIFAR-10 from the python-format pickles in `<root>/cifar-10-batches-py/`.

    `data_batch_1..5` give 50000 train images, `test_batch` 10000 val images (N, 3, 32, 32),
    pixels divided by 255 and standardised per channel with train statistics; 10 classes.
    With `source.download`, torchvision fetches the archive (checking its checksums) first.

    The files are read here rather than through `torchvision.datasets.CIFAR10`, which checks the
    md5 of every file on load and so rejects any file but the published ones. Unpickling runs code
    from the files, as torchvision's reader does too: point `root` only at files you trust.
    """
    root = _root(source, "CIFAR-10")
    folder = root / CIFAR_FOLDER
    files = (*CIFAR_TRAIN, CIFAR_TEST)
    if source.download:
        from torchvision.datasets import CIFAR10

        with _not_found_as_data_error("CIFAR-10", folder, files), _download_error("CIFAR-10", root):
            CIFAR10(root, train=False, download=True)
    _require("CIFAR-10", folder, files)
    train = [_cifar_batch(folder / file) for file in CIFAR_TRAIN]
    val_images, val_labels = _cifar_batch(folder / CIFAR_TEST)
    return make_splits(
        np.concatenate([images for images, _ in train]) / np.float32(255),
        np.concatenate([labels for _, labels in train]),
        val_images / np.float32(255),
        val_labels,
        classes=10,
        dims=CHANNELS,
    )
