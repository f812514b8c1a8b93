"""Gradient estimators behind one interface, registered by name.

Importing the package registers every estimator it ships; `make_estimator("name:key=value")`
builds one, and `registry.names()` lists them.
"""

import estimators.backprop_checkpoint  # registers backprop-checkpoint
import estimators.backprop_subbatch  # registers backprop-subbatch
import estimators.cv_predicted  # registers cv-predicted
import estimators.fg_activity  # registers fg-activity
import estimators.fg_weight  # registers fg-weight
import estimators.fg_wperp  # registers fg-wperp
import estimators.fg_wperp_ns  # registers fg-wperp-ns
import estimators.fg_wt  # registers fg-wt
import estimators.sparse_vjp  # registers sparse-vjp
import estimators.spsa  # registers spsa
import estimators.svd_subspace  # noqa: F401  (registers svd-subspace)
from estimators import backprop
from estimators.base import (
    Batch,
    Draws,
    Estimate,
    GradientEstimator,
    PerExampleLoss,
    trainable_parameters,
)
from estimators.errors import EstimatorError
from estimators.params import Param
from estimators.registry import make_estimator

__all__ = [
    "Batch",
    "Draws",
    "Estimate",
    "EstimatorError",
    "GradientEstimator",
    "Param",
    "PerExampleLoss",
    "backprop",
    "make_estimator",
    "trainable_parameters",
]
