"""Short labels for estimator settings, shared by the report and the sweep's terminal output.

A label shows only the options that differ between the settings of one estimator
(`sparse-vjp:keep=0.5`); the full options text is in the report's legend table.
"""

from __future__ import annotations

from collections.abc import Iterable

from tasks.spec import SpecError, parse_options


def _options(text: str) -> dict[str, str]:
    try:
        return parse_options(text)
    except SpecError:  # not key=value text (an outside estimator's class path): one option
        return {"": text}


def short_labels(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(estimator, options text) -> label, for every key, in order of first appearance."""
    keys = list(dict.fromkeys(keys))
    settings: dict[str, list[dict[str, str]]] = {}
    for est, params in keys:
        settings.setdefault(est, []).append(_options(params))
    labels = {}
    for est, params in keys:
        values = _options(params)
        varying = [k for k in values if len({str(s.get(k)) for s in settings[est]}) > 1]
        shown = ",".join(f"{k}={values[k]}" if k else values[k] for k in varying)
        labels[(est, params)] = f"{est}:{shown}" if shown else est
    return labels
