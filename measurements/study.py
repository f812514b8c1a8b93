"""What a study is: a measurement beyond the sweep's cells, with settings, columns and rows.

A study (the forward-gradient cost table, the sparse-VJP trade-off, the blog table, ...) is one
module in `measurements/studies/` holding a `Study`: its settings (a frozen dataclass whose
defaults are the full run), a `smoke` instance (two steps, tiny sizes: what the test suite runs),
the results files it writes (their columns are declared in `measurements.schema.STUDY_COLUMNS`),
and `measure(settings, device)`, which returns tidy rows per file. `python -m runners.study`
runs one and appends its rows through `measurements.store`; `python -m reports` draws them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

from tasks.spec import SpecError, format_options, parse_options, split_spec

Rows = dict[str, list[dict[str, Any]]]
S = TypeVar("S")
SEPARATOR = "+"  # between the items of a tuple-valued setting: `sizes=64+128`


class StudyError(ValueError):
    """An unknown study or a setting it does not take; the command line prints one line."""


@dataclass(frozen=True)
class Study(Generic[S]):
    """One study: see the module docstring."""

    name: str
    summary: str
    files: tuple[str, ...]
    settings: type[S]
    smoke: S
    measure: Callable[[S, torch.device], Rows]

    def configure(self, options: str) -> S:
        """Settings from `key=value,...` text over the defaults (values typed by the fields)."""
        try:
            given = parse_options(options)
        except SpecError as exc:
            raise StudyError(f"{self.name}: settings {exc}") from None
        hints = typing.get_type_hints(self.settings)
        fields = {f.name for f in dataclasses.fields(self.settings)}  # type: ignore[arg-type]
        values: dict[str, Any] = {}
        for key, text in given.items():
            if key not in fields:
                raise StudyError(
                    f"{self.name}: unknown setting {key!r}; valid: {', '.join(sorted(fields))}"
                )
            values[key] = _convert(text, hints[key], f"{self.name}: {key}")
        return self.settings(**values)

    def describe(self, settings: S) -> str:
        """The spec that reproduces `settings`: `name:key=value,...` with every field."""
        values = {
            k: SEPARATOR.join(map(str, v)) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(settings).items()  # type: ignore[call-overload]
        }
        return f"{self.name}:{format_options(values)}"


def study_name(spec: str) -> tuple[str, str]:
    """`"lowrank-layer:batch=64"` -> ("lowrank-layer", "batch=64")."""
    return split_spec(spec)


def _convert(text: str, kind: Any, where: str) -> Any:
    """`text` as a value of type `kind` (int, float, bool, str or a tuple of one of those)."""
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        return tuple(_convert(t, item, where) for t in text.split(SEPARATOR) if t)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        return kind(text)
    except ValueError:
        raise StudyError(f"{where} must be {kind.__name__}, got {text!r}") from None
