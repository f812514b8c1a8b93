"""The results folder: tidy CSV files appended per finished cell, and `manifest.json`.

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

MANIFEST = "manifest.json"
COLUMNS: dict[str, tuple[str, ...]] = {
    "train.csv": (
        "task", "estimator", "params", "seed", "lr", "step", "seconds", "flops",
        "train_loss", "val_acc", "status",
    ),
}  # fmt: skip


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


def append_rows(folder: Path, file: str, rows: list[dict[str, Any]]) -> None:
    """Append rows to `folder/file` (written with its header if new), atomically."""
    path = folder / file
    old = path.read_text() if path.exists() else ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS[file], lineterminator="\n")
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
