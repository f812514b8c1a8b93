"""Shared test setup: a sensible thread count and an isolated estimator registry."""

from __future__ import annotations

import pytest
import torch

from estimators import registry
from measurements.device import use_available_cores
from tasks.data import embedded

use_available_cores()
# MNIST-1D's generation reduces in float32 with torch ops whose rounding depends on the thread
# count; cached here, under the thread count a sweep process uses, it is the same data in every
# test whichever test first asks for it (some tests run single-threaded).
embedded.mnist1d()


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Estimators a test defines are forgotten when it ends."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def devices() -> list[pytest.param]:
    """CPU always; CUDA when a GPU is present (skipped otherwise)."""
    cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    return [pytest.param("cpu"), pytest.param("cuda", marks=[cuda, pytest.mark.cuda])]
