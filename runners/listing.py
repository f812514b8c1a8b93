"""What `python -m runners.sweep --list` prints: estimators, tasks and presets, grouped, every
line at most `WIDTH` columns (long descriptions and parameter lists wrap with an indent)."""

from __future__ import annotations

import textwrap

from estimators import registry
from runners.presets import load_preset, preset_names
from tasks import TASKS

WIDTH = 100
INDENT = " " * 6


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


def _entry(head: str, *lines: str) -> str:
    """`head` wrapped at `WIDTH`, then each of `lines` wrapped under it with an indent."""
    out = textwrap.wrap(head, WIDTH, subsequent_indent=INDENT, break_on_hyphens=False)
    for line in lines:
        out += textwrap.wrap(
            line,
            WIDTH,
            initial_indent=INDENT,
            subsequent_indent=INDENT + "  ",
            break_on_hyphens=False,
        )
    return "\n".join(out)


def estimators_listing() -> str:
    """Estimators grouped by whether they are unbiased; each with its parameters."""
    groups: dict[bool, list[str]] = {True: [], False: []}
    for name in registry.names():
        cls = registry.get(name)
        params = "; ".join(f"{p.name}={p.default} ({p.valid_range()})" for p in cls.params)
        groups[bool(cls.unbiased)].append(
            _entry(
                f"  {name} (unbiased: {'yes' if cls.unbiased else 'no'}): "
                f"{_first_line(cls.__doc__)}",
                f"parameters: {params or '-'}",
            )
        )
    titles = {True: "unbiased estimators", False: "biased estimators"}
    return "\n".join(f"{titles[k]}:\n" + "\n".join(v) for k, v in groups.items() if v)


def tasks_listing() -> str:
    """Tasks grouped by where their data comes from (embedded, or `--data-root`)."""
    groups: dict[bool, list[str]] = {True: [], False: []}
    for t in TASKS.values():
        groups[t.embedded].append(
            _entry(
                f"  {t.name}: {t.n_params:,} params, {t.dataset}, target {t.target_acc:.2f}, "
                f"budget {t.steps} x {t.batch_size} (steps x batch)",
                t.description,
            )
        )
    titles = {True: "embedded data (no files needed)", False: "data from --data-root"}
    return "\n".join(f"{titles[k]}:\n" + "\n".join(v) for k, v in groups.items() if v)


def presets_listing() -> str:
    """Presets, each with its tasks, seeds, measurements and description."""
    entries = []
    for name in preset_names():
        p = load_preset(name)
        entries.append(
            _entry(
                f"  {name}: {p.seeds} seed{'s' * (p.seeds != 1)}; measure "
                f"{','.join(p.measure)}; tasks {' '.join(p.tasks)}",
                p.description,
            )
        )
    return "\n".join(entries)


def listing() -> str:
    """All three lists, titled."""
    return "\n\n".join(
        f"{title}\n{text}"
        for title, text in (
            ("ESTIMATORS", estimators_listing()),
            ("TASKS", tasks_listing()),
            ("PRESETS", presets_listing()),
        )
    )
