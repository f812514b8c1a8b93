"""Typed, range-checked estimator parameters: declared once, validated at construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from estimators.errors import EstimatorError

_KINDS = (int, float, str, bool)


@dataclass(frozen=True, kw_only=True)
class Param:
    """One estimator parameter: its type, default, valid range and meaning.

    `low`/`high` bound numbers (inclusive unless `low_open`/`high_open`); `choices` lists the
    valid strings. `check` returns the value converted to `kind` or raises `EstimatorError`
    with a message that names the valid range.
    """

    name: str
    kind: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise TypeError(f"parameter {self.name}: kind must be one of int, float, str, bool")
        self.check(self.default, owner="(default)")

    def valid_range(self) -> str:
        """The valid values in words, for error messages and `--list`."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        if self.kind is bool:
            return "true or false"
        noun = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"{noun} in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{noun} {'<' if self.high_open else '<='} {self.high:g}"
        return noun

    def parse(self, text: str, owner: str) -> Any:
        """Convert a command-line string (`k=10` gives "10") and check it."""
        value: Any = text
        try:
            if self.kind is bool:
                lowered = text.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                value = lowered in ("true", "1", "yes")
            elif self.kind is int:
                value = int(text)
            elif self.kind is float:
                value = float(text)
        except ValueError:
            raise self._error(owner, text) from None
        return self.check(value, owner)

    def check(self, value: Any, owner: str) -> Any:
        """Return `value` as `kind` if it is valid, else raise `EstimatorError`."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise self._error(owner, value)
            return value
        if self.kind is str:
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise self._error(owner, value)
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._error(owner, value)
        if self.kind is int and value != int(value):
            raise self._error(owner, value)
        value = self.kind(value)
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise self._error(owner, value)
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise self._error(owner, value)
        return value

    def _error(self, owner: str, value: Any) -> EstimatorError:
        return EstimatorError(
            f"{owner}: parameter {self.name}={value!r} is invalid; valid: {self.valid_range()}"
        )
