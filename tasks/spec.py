"""The `NAME:key=value,...` spec grammar, written once.

Tasks (`mlp-mnist1d:width=512`), estimators (`fg-wperp:k=5`, `pkg.mod:Class:scale=0.5`), studies
(`lowrank-layer:batch=256`) and the results tables' `params` column (`k=10,tangents=1`, `-` for
none) all use it. Values stay text here; each caller converts them to its own types.
"""

from __future__ import annotations

from collections.abc import Mapping

NONE = "-"  # the options text of a spec without options, as the results tables write it


class SpecError(ValueError):
    """Options text that is not `key=value,...`; callers re-raise it as their own error."""


def split_spec(spec: str) -> tuple[str, str]:
    """`"name:k=1,j=2"` -> ("name", "k=1,j=2"); a spec without options gives ("name", "")."""
    head, _, rest = spec.partition(":")
    return head, rest


def parse_options(text: str) -> dict[str, str]:
    """`"k=10,tangents=1"` -> {"k": "10", "tangents": "1"}; "" and "-" -> {}."""
    if text in ("", NONE):
        return {}
    options: dict[str, str] = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SpecError(f"must be written key=value, got {item!r}")
        options[key.strip()] = value.strip()
    return options


def format_options(options: Mapping[str, object]) -> str:
    """Inverse of `parse_options` (values as `str` gives them); {} -> "-"."""
    return ",".join(f"{k}={v}" for k, v in options.items()) or NONE
