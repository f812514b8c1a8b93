"""Reading a results folder (docs/protocol.md) for the reports: its tidy CSVs and manifest.

Only the files the sweep writes, and the studies' tables (`STUDY_COLUMNS`, e.g. `blog.csv` from
`python -m runners.study blog-table --out DIR`), are read; nothing is re-run. A table written
before protocol 2 (its header is the current one less `ADDED_IN_2[file]`, in order) still loads:
the columns it lacks are added as NaN, which every table shows as absent ("-"). A missing or
foreign folder, a corrupt manifest or a CSV with any other header is a `ReportError` (one line).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from measurements.schema import ADDED_IN_2, COLUMNS, MANIFEST, STUDY_COLUMNS

KEYS = ["task", "estimator", "params"]


class ReportError(ValueError):
    """A results folder the reports cannot be built from; the message is one line."""


@dataclass(frozen=True)
class Results:
    """A results folder in memory: the manifest and every non-empty tidy table.

    frames: the sweep's tables (`COLUMNS`), each with task, estimator and params columns.
    others: the other tables present (`STUDY_COLUMNS`, e.g. blog.csv), keyed otherwise.
    legacy: the files written before protocol 2, whose `ADDED_IN_2` columns are all NaN.
    """

    folder: Path
    manifest: dict[str, Any]
    frames: dict[str, pd.DataFrame]
    others: dict[str, pd.DataFrame] = field(default_factory=dict)
    legacy: frozenset[str] = frozenset()

    def frame(self, file: str) -> pd.DataFrame | None:
        """The rows of `file` (e.g. "train.csv", "blog.csv"), or None when there are none."""
        return self.frames.get(file, self.others.get(file))

    def task_info(self, task: str, key: str) -> Any:
        """`manifest["tasks"][task][key]`, or None when the manifest does not record it."""
        return self.manifest.get("tasks", {}).get(task, {}).get(key)

    def tasks(self) -> list[str]:
        """Every task with rows in any file, in the order the manifest's configuration lists
        them (then any others in order of appearance)."""
        seen = [t for df in self.frames.values() for t in df["task"].unique()]
        listed = self.manifest.get("config", {}).get("tasks", [])
        return [t for t in dict.fromkeys([*listed, *seen]) if t in set(seen)]

    def target(self, task: str) -> float | None:
        """The task's target validation accuracy from the manifest."""
        value = self.task_info(task, "target_acc")
        return float(value) if value is not None else None


def load_results(folder: Path) -> Results:
    """Read `folder`; a `ReportError` names the problem when it is not a sound results folder."""
    if not folder.exists():
        raise ReportError(f"{folder} does not exist; pass a results folder written by the sweep")
    if not folder.is_dir():
        raise ReportError(f"{folder} is a file, not a results folder")
    path = folder / MANIFEST
    if not path.exists():
        raise ReportError(f"{folder} is not a results folder: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is corrupt ({exc})") from None
    if not isinstance(manifest, dict) or "config" not in manifest:
        raise ReportError(f"{path} is corrupt: it lacks 'config'")
    frames, others, legacy = {}, {}, set()
    for tables, known in ((frames, COLUMNS), (others, STUDY_COLUMNS)):
        for file, columns in known.items():
            df, old = _read_csv(folder / file, columns)
            if df is not None and len(df):
                tables[file] = df
                legacy |= {file} if old else set()
    return Results(folder, manifest, frames, others, frozenset(legacy))


def _read_csv(path: Path, columns: tuple[str, ...]) -> tuple[pd.DataFrame | None, bool]:
    """The table at `path` (None when absent) and whether it was written before protocol 2.

    Its header must be `columns`, or `columns` less `ADDED_IN_2[path.name]` (an old file: the
    missing columns are added as NaN); anything else, or an unreadable file, is a `ReportError`.
    Name columns are read as text, "nan" alone as missing."""
    if not path.exists():
        return None, False
    text = {c: str for c in ("task", "estimator", "params", "dataset", "label") if c in columns}
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=["nan"], dtype=text)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is corrupt ({exc})".splitlines()[0]) from None
    added = ADDED_IN_2.get(path.name, ())
    old = tuple(c for c in columns if c not in added)
    if added and tuple(df.columns) == old:
        return df.reindex(columns=list(columns)), True
    if tuple(df.columns) != columns:
        raise ReportError(f"{path} is corrupt: its header is not {columns}")
    return df, False


def number(text: str) -> float:
    """A parameter or option value as a number (NaN when it is not one)."""
    try:
        return float(text)
    except ValueError:
        return math.nan
