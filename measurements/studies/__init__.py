"""Every study, by name: `python -m runners.study NAME` (see `measurements.study`).

Each module defines `STUDY`; modules are imported when a study is asked for, so listing the
names costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

from measurements.study import Study, StudyError

MODULES: dict[str, str] = {
    "blog-table": "measurements.studies.blog_table",
    "cv-predicted": "measurements.studies.cv_predicted",
    "cv-vit-digits": "measurements.studies.cv_vit_digits",
    "forward-gradients": "measurements.studies.forward_gradients",
    "lowrank-layer": "measurements.studies.lowrank_layer",
    "quality-draws": "measurements.studies.quality_draws",
    "sparse-vjp": "measurements.studies.sparse_vjp",
    "sparse-vjp-tradeoff": "measurements.studies.sparse_vjp_tradeoff",
    "wperp-overlap": "measurements.studies.wperp_overlap",
}


def get_study(name: str) -> Study[Any]:
    """The study called `name`."""
    if name not in MODULES:
        raise StudyError(f"unknown study {name!r}; valid: {', '.join(sorted(MODULES))}")
    study: Study[Any] = importlib.import_module(MODULES[name]).STUDY
    return study
