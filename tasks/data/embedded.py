"""Data sets that ship with installed packages or are generated: no files, no network.

Each loader is deterministic and cached in-process, so repeated calls return the same `Splits`.
"""

from __future__ import annotations

import random
from functools import cache

import numpy as np
from mnist1d.data import get_dataset_args, make_dataset
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    make_classification,
)

from tasks.data.splits import CHANNELS, FEATURES, GLOBAL, Splits, make_splits, stratified_split


def _tabular(x: np.ndarray, y: np.ndarray, classes: int) -> Splits:
    """Stratified 80/20 split of (N, F) features, standardised feature-wise."""
    return make_splits(*stratified_split(x, y), classes=classes, dims=FEATURES)


@cache
def digits() -> Splits:
    """scikit-learn's 8x8 handwritten digits (1797 images): 1437 train / 360 val, 10 classes.

    Images (N, 1, 8, 8), pixels divided by 16, then standardised with the train split's mean and
    std; stratified 80/20 split with seed 0.
    """
    data = load_digits()
    images = data.images[:, None] / 16.0  # (N, 1, 8, 8)
    return make_splits(*stratified_split(images, data.target), classes=10, dims=CHANNELS)


@cache
def digits_one_vs_rest(digit: int = 1) -> Splits:
    """scikit-learn's digits as flat (N, 64) features; label 1 for `digit`, 0 otherwise.

    1797 examples, about 10 % positive; stratified 80/20 split with seed 0 (1437 / 360); features
    standardised with the train split's mean and std (constant features keep scale 1); 2 classes.
    """
    data = load_digits()
    return _tabular(data.data, (data.target == digit).astype(np.int64), classes=2)


@cache
def mnist1d() -> Splits:
    """MNIST-1D generated offline with its default arguments (seed 42), nothing downloaded.

    Its own split: 4000 train / 1000 val signals, (N, 40); standardised with one mean and std of
    the train split; 10 classes. The global `random`/NumPy RNG state, which the generator reseeds,
    is restored afterwards.
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return make_splits(
        data["x"], data["y"], data["x_test"], data["y_test"], classes=10, dims=GLOBAL
    )


@cache
def breast_cancer() -> Splits:
    """scikit-learn's Wisconsin breast cancer set: 569 examples, 30 features, 2 classes.

    Stratified 80/20 split with seed 0 (455 / 114); features standardised with train statistics.
    """
    data = load_breast_cancer()
    return _tabular(data.data, data.target, classes=2)


@cache
def diabetes_binary() -> Splits:
    """scikit-learn's diabetes regression set turned binary: 442 examples, 10 features.

    Label 1 when the disease-progression target exceeds the median of all targets (half the
    examples); stratified 80/20 split with seed 0 (353 / 89); features standardised with train
    statistics; 2 classes.
    """
    data = load_diabetes()
    labels = (data.target > np.median(data.target)).astype(np.int64)
    return _tabular(data.data, labels, classes=2)


@cache
def synthetic20() -> Splits:
    """`make_classification`: 1000 examples, 20 features (10 informative, 5 redundant), seed 0.

    Stratified 80/20 split with seed 0 (800 / 200); features standardised with train statistics;
    2 classes.
    """
    x, y = make_classification(
        n_samples=1000, n_features=20, n_informative=10, n_redundant=5, random_state=0
    )
    return _tabular(x, y, classes=2)
