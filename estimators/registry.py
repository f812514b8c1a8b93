"""Estimator names -> classes, and specs such as `fg-wperp:k=5` or `mypkg.mod:MyEstimator`.

A spec is `NAME[:key=value,...]` for a registered estimator, or `module.path:Class[:key=value,...]`
for one loaded from outside the package (told apart by the dotted module path). Loading a class by
import path registers it under its own `name` too.
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING

from estimators.errors import EstimatorError
from tasks.spec import SpecError, parse_options, split_spec

if TYPE_CHECKING:
    from estimators.base import GradientEstimator

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_REGISTRY: dict[str, type[GradientEstimator]] = {}


def register(cls: type[GradientEstimator]) -> None:
    """Register an estimator class under `cls.name`; names are unique and never reused."""
    name = cls.name
    if not isinstance(name, str) or not _NAME.match(name):
        raise EstimatorError(
            f"estimator name {name!r} is invalid: use lower-case letters, digits and '-'"
        )
    if name in _REGISTRY:
        other = _REGISTRY[name]
        raise EstimatorError(
            f"estimator name {name!r} is already registered by "
            f"{other.__module__}.{other.__qualname__}; choose another name"
        )
    _REGISTRY[name] = cls


def names() -> list[str]:
    """Registered estimator names, sorted."""
    return sorted(_REGISTRY)


def shipped_names() -> list[str]:
    """Names of the estimators this package ships (not ones loaded from elsewhere), sorted."""
    return [n for n in names() if _REGISTRY[n].__module__.startswith("estimators.")]


def get(name: str) -> type[GradientEstimator]:
    """The class registered as `name`."""
    if name not in _REGISTRY:
        raise EstimatorError(f"unknown estimator {name!r}; valid: {', '.join(names())}")
    return _REGISTRY[name]


def load_path(path: str) -> type[GradientEstimator]:
    """Import `module.path:Class` and return the class (registering it by its name)."""
    from estimators.base import GradientEstimator

    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise EstimatorError(f"estimator path {path!r} must look like 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EstimatorError(
            f"cannot import {module_name!r} for estimator {path!r}: {exc}"
        ) from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, GradientEstimator)):
        raise EstimatorError(f"{path!r} is not a GradientEstimator subclass")
    if "name" not in cls.__dict__:
        raise EstimatorError(f"{path!r} declares no `name`")
    return cls


def parse_spec(spec: str) -> tuple[type[GradientEstimator], dict[str, str]]:
    """Split a spec into its class and its raw `key=value` strings."""
    head, rest = split_spec(spec)
    if "." in head:
        attr, rest = split_spec(rest)
        cls = load_path(f"{head}:{attr}")
    else:
        cls = get(head)
    try:
        return cls, parse_options(rest)
    except SpecError as exc:
        raise EstimatorError(f"{spec!r}: parameters {exc}") from None


def make_estimator(spec: str) -> GradientEstimator:
    """Build an estimator from a spec, converting and checking each parameter."""
    cls, raw = parse_spec(spec)
    declared = {p.name: p for p in cls.params}
    # Unknown keys pass through unparsed: the constructor rejects them, naming the valid ones.
    values = {k: declared[k].parse(v, cls.name) if k in declared else v for k, v in raw.items()}
    return cls(**values)
