"""Writing a results folder: tidy CSV files appended per finished cell, and `manifest.json`.

Every write goes to a temporary file that then replaces the target, so an interrupted sweep
leaves each file either as it was or with the whole cell added, never half a row.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from measurements.schema import COLUMNS, MANIFEST, STUDY_COLUMNS

ALL_COLUMNS = {**COLUMNS, **STUDY_COLUMNS}


class ResultsError(ValueError):
    """A results folder that cannot be written to as asked."""


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def append_rows(folder: Path, file: str, rows: list[dict[str, Any]], replace: bool = False) -> None:
    """Append rows to `folder/file` (written with its header if new, or anew when `replace`),
    atomically; the file's columns are the schema's (`COLUMNS` or `STUDY_COLUMNS`)."""
    path = folder / file
    old = path.read_text() if path.exists() and not replace else ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ALL_COLUMNS[file], lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, old + buffer.getvalue())


def check_new(folder: Path) -> None:
    """Refuse a results folder that already holds anything (nothing existing is overwritten)."""
    if folder.exists() and not folder.is_dir():
        raise ResultsError(f"{folder} is a file, not a results folder; choose another --out")
    if folder.exists() and any(folder.iterdir()):
        what = "a sweep" if (folder / MANIFEST).exists() else "files that are not a sweep's"
        raise ResultsError(
            f"{folder} already holds {what}; choose another --out or remove it first"
        )


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write `manifest.json` atomically."""
    atomic_write(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=False) + "\n")


def open_existing(folder: Path) -> dict[str, Any]:
    """The manifest of an existing results folder, after checking the folder is sound."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ResultsError(f"{folder} does not exist; nothing to resume (drop --resume to start)")
    if not path.exists():
        raise ResultsError(f"{folder} is not a results folder: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(
            f"{path} is corrupt ({exc}); remove the folder and start again"
        ) from None
    if not isinstance(manifest, dict) or not {"config", "cells"} <= set(manifest):
        raise ResultsError(f"{path} is corrupt: it lacks 'config' or 'cells'")
    for file, columns in COLUMNS.items():
        if (folder / file).exists():
            with open(folder / file, newline="") as f:
                header = next(csv.reader(f), None)
            if header is None or tuple(header) != columns:
                raise ResultsError(f"{folder / file} is corrupt: its header is not {columns}")
    return manifest


def drop_unfinished(folder: Path, done: set[str]) -> None:
    """Remove rows of cells not marked done (left by an interruption between two writes)."""
    for file in COLUMNS:
        path = folder / file
        if not path.exists():
            continue
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [row for row in rows if row["cell"] in done]
        if len(kept) < len(rows):
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=COLUMNS[file], lineterminator="\n")
            writer.writeheader()
            writer.writerows(kept)
            atomic_write(path, buffer.getvalue())
