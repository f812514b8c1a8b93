"""What `python -m runners.sweep --list` prints: estimators, tasks and presets."""

from __future__ import annotations

from tabulate import tabulate

from estimators import registry
from runners.presets import load_preset, preset_names
from tasks import TASKS


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


def estimators_table() -> str:
    rows = []
    for name in registry.names():
        cls = registry.get(name)
        params = "; ".join(f"{p.name}={p.default} ({p.valid_range()})" for p in cls.params)
        rows.append(
            [name, "yes" if cls.unbiased else "no", params or "-", _first_line(cls.__doc__)]
        )
    return tabulate(rows, headers=["estimator", "unbiased", "parameters (default, range)", "what"])


def tasks_table() -> str:
    rows = [
        [
            t.name,
            f"{t.n_params:,}",
            t.dataset + ("" if t.embedded else " (--data-root)"),
            f"{t.target_acc:.2f}",
            f"{t.steps} x {t.batch_size}",
            t.description,
        ]
        for t in TASKS.values()
    ]
    headers = ["task", "params", "data", "target", "budget (steps x batch)", "model"]
    return tabulate(rows, headers=headers)


def presets_table() -> str:
    rows = []
    for name in preset_names():
        p = load_preset(name)
        rows.append([name, " ".join(p.tasks), p.seeds, ",".join(p.measure), p.description])
    return tabulate(rows, headers=["preset", "tasks", "seeds", "measure", "what"])


def listing() -> str:
    """All three tables, titled."""
    return "\n\n".join(
        f"{title}\n{table}"
        for title, table in (
            ("ESTIMATORS", estimators_table()),
            ("TASKS", tasks_table()),
            ("PRESETS", presets_table()),
        )
    )
