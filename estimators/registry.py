"""Estimator names -> classes, and specs such as `fg-wperp:k=5` or `mypkg.mod:MyEstimator`.

A spec is `NAME[:key=value,...]` for a registered estimator, or `module:Class[:key=value,...]` for
one loaded from outside the package: a dotted module path (`mypkg.mod:Class`), or a module without
a dot that is not a registered name (`myest:MyEstimator`). The current directory is searched
first. Loading a class by import path registers it under its own `name` too; `import_path` gives
the path back, which the sweep's manifest records so that `--resume` can load it again.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
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
            f"{cls.__qualname__}.name = {name!r} is invalid: use lower-case letters, digits and '-'"
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
        raise EstimatorError(
            f"unknown estimator {name!r}; valid: {', '.join(names())}, or a class by import "
            "path, module:Class (e.g. mypkg.mod:MyEstimator, from the current directory)"
        )
    return _REGISTRY[name]


def import_path(cls: type[GradientEstimator]) -> str:
    """`module:Class`, the path `load_path` loads `cls` from."""
    return f"{cls.__module__}:{cls.__qualname__}"


def load_path(path: str) -> type[GradientEstimator]:
    """Import `module:Class` (the current directory searched first) and return the class,
    checked to be a concrete `GradientEstimator` that declares its own `name`, `unbiased` and
    `params` (registering it by its name)."""
    from estimators.base import GradientEstimator
    from estimators.params import Param

    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise EstimatorError(f"estimator path {path!r} must look like 'module:Class'")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    importlib.invalidate_caches()  # a module written since the last import is found
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a user's module can fail in any way; each is one line
        what = "not found" if isinstance(exc, ModuleNotFoundError) else type(exc).__name__
        detail = "".join(str(exc).splitlines()[:1])
        raise EstimatorError(
            f"cannot import {module_name!r} for estimator {path!r} ({what}: {detail})"
        ) from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, GradientEstimator)):
        what = f"the module has no {attr!r}" if cls is None else f"it is a {type(cls).__name__}"
        raise EstimatorError(f"{path!r} is not a GradientEstimator subclass ({what})")
    if "name" not in cls.__dict__:
        raise EstimatorError(f"{path!r} declares no `name`: set {attr}.name = 'my-estimator'")
    if not isinstance(cls.unbiased, bool):
        raise EstimatorError(f"{attr}.unbiased must be True or False, not {cls.unbiased!r}")
    if not (isinstance(cls.params, tuple) and all(isinstance(p, Param) for p in cls.params)):
        raise EstimatorError(f"{attr}.params must be a tuple of estimators.Param")
    if cls.name not in _REGISTRY:  # imported before, then forgotten (tests isolate the registry)
        register(cls)
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise EstimatorError(f"{attr} does not implement {missing} (estimator {path!r})")
    return cls


def parse_spec(spec: str) -> tuple[type[GradientEstimator], dict[str, str]]:
    """Split a spec into its class and its raw `key=value` strings."""
    head, rest = split_spec(spec)
    attr, tail = split_spec(rest)
    if "." in head or (head not in _REGISTRY and attr and "=" not in attr):
        cls, rest = load_path(f"{head}:{attr}"), tail
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
