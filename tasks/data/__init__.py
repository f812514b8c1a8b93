"""Data sets by name: each loads as `Splits` (normalised train/validation tensors).

Embedded sets need nothing; file-backed ones (`mnist`, `fashion-mnist`, `cifar10`) read the folder
in `DataSource.root` and download into it only when `DataSource.download` is set.
"""

from __future__ import annotations

from collections.abc import Callable

from tasks.data import embedded, files
from tasks.data.splits import DataSource, Splits
from tasks.errors import DataError


def _ignoring_source(loader: Callable[[], Splits]) -> Callable[[DataSource], Splits]:
    """A loader that needs no files, called like the file-backed ones."""

    def load_embedded(source: DataSource) -> Splits:
        return loader()

    return load_embedded


DATASETS: dict[str, Callable[[DataSource], Splits]] = {
    "digits": _ignoring_source(embedded.digits),
    "digits-1-vs-rest": _ignoring_source(embedded.digits_one_vs_rest),
    "mnist1d": _ignoring_source(embedded.mnist1d),
    "breast-cancer": _ignoring_source(embedded.breast_cancer),
    "diabetes": _ignoring_source(embedded.diabetes_binary),
    "synthetic20": _ignoring_source(embedded.synthetic20),
    "mnist": files.mnist,
    "fashion-mnist": files.fashion_mnist,
    "cifar10": files.cifar10,
}


def load(name: str, source: DataSource | None = None) -> Splits:
    """The data set `name`, file-backed ones read from `source` (default: no root, no download)."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name](source if source is not None else DataSource())


__all__ = ["DATASETS", "DataSource", "Splits", "load"]
