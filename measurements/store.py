"""Writing a results folder: tidy CSV files appended per finished cell, and `manifest.json`.

Every write goes to a temporary file that then replaces the target, so an interrupted sweep
leaves each file either as it was or with the whole cell added, never half a row. The manifest
records each done cell's rows per table (`schema.tally`); `open_existing` checks the folder
against it and `repair` makes a resumed folder whole again (see `schema.audit`).

Fault injection for `benchmarks.kill_resume`: with `CHEAPGRAD_KILL_IN_WRITE=N:F` in the
environment, the N-th table write (1-based) of the process SIGKILLs it after writing the fraction F
of the new text to the temporary file, as a kill landing in the middle of that write would.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from measurements.schema import (
    COLUMNS,
    MANIFEST,
    STUDY_COLUMNS,
    Audit,
    audit,
    manifest_problem,
    read_table,
    row_text,
    tally,
)

ALL_COLUMNS = {**COLUMNS, **STUDY_COLUMNS}


class ResultsError(ValueError):
    """A results folder that cannot be written to as asked."""


_table_writes = 0


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step."""
    global _table_writes
    tmp = path.with_name(path.name + ".tmp")
    kill = os.environ.get("CHEAPGRAD_KILL_IN_WRITE", "")
    if kill and path.suffix == ".csv":
        _table_writes += 1
        at, _, fraction = kill.partition(":")
        if _table_writes == int(at):
            tmp.write_text(text[: int(len(text) * float(fraction or 0.5))])
            os.kill(os.getpid(), signal.SIGKILL)
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def append_rows(
    folder: Path, file: str, rows: list[dict[str, Any]], replace: bool = False
) -> dict[str, Any]:
    """Append rows to `folder/file` (written with its header if new, or anew when `replace`),
    atomically; the file's columns are the schema's (`COLUMNS` or `STUDY_COLUMNS`). Returns the
    rows' tally (count and digest) for the manifest."""
    path = folder / file
    old = path.read_text() if path.exists() and not replace else ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ALL_COLUMNS[file], lineterminator="\n")
    writer.writerows(rows)
    added = buffer.getvalue()
    header = "" if old else row_text(ALL_COLUMNS[file])
    atomic_write(path, old + header + added)
    return tally([row_text(r) for r in read_table(added)[0]])


def make_folder(folder: Path) -> None:
    """Create `folder` (and its parents); a `ResultsError` when that is impossible."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsError(f"cannot create {folder}: {exc.strerror or exc}") from None


def check_creatable(folder: Path) -> None:
    """Refuse a folder that cannot be created, before anything is measured or written (a
    missing folder is created to find out, then removed again)."""
    missing = []
    ancestor = folder.absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        missing.append(ancestor)
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ResultsError(f"cannot create {folder}: {ancestor} is a file; choose another --out")
    if missing:
        make_folder(folder)
        for made in missing:
            made.rmdir()
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise ResultsError(f"cannot write into {folder}: permission denied")


def check_new(folder: Path) -> None:
    """Refuse a results folder that already holds anything (nothing existing is overwritten) or
    cannot be created."""
    check_creatable(folder)
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


def open_existing(folder: Path) -> tuple[dict[str, Any], Audit]:
    """The manifest of an existing results folder and how its tables agree with it; a
    `ResultsError` (nothing touched) for a folder no re-run can repair."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ResultsError(f"{folder} does not exist; nothing to resume (drop --resume to start)")
    if not path.exists():
        raise ResultsError(f"{folder} is not a results folder: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_bytes().decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(
            f"{path} is corrupt ({exc}); remove the folder and start again"
        ) from None
    problem = manifest_problem(manifest)
    if problem:
        raise ResultsError(f"{path} is corrupt: {problem}")
    found = audit(folder, manifest)
    if found.problems:
        raise ResultsError(f"{found.problems[0]}; nothing was changed")
    return manifest, found


def repair(folder: Path, manifest: dict[str, Any], found: Audit) -> str:
    """Make `folder` agree with `manifest` before a resume: remove the cut-off last rows and the
    rows of unfinished and damaged cells (a table losing rows of a damaged cell is first copied
    to `FILE.before-repair`), mark damaged cells pending, delete stray temporary files.
    Returns one line saying what was done ("" when nothing)."""
    for stray in folder.glob("*.tmp"):
        stray.unlink()
    drop = found.unfinished | found.damaged
    for file, columns in COLUMNS.items():
        path = folder / file
        if not path.exists():
            continue
        records, torn = read_table(path.read_text())
        kept = [r for r in records[1:] if r[-1] not in drop]
        if not torn and len(kept) == len(records) - 1:
            continue
        if any(r[-1] in found.damaged for r in records[1:]):
            shutil.copyfile(path, _unused(folder / f"{file}.before-repair"))
        atomic_write(path, "".join(row_text(r) for r in [list(columns), *kept]))
    for key in found.damaged:
        manifest["cells"][key] = {"status": "pending", "repaired": "rows disagreed"}
    if found.damaged:
        write_manifest(folder, manifest)
    return f"repaired {folder}: {found.summary()}; those cells run again" if not found.sound else ""


def _unused(path: Path) -> Path:
    """`path`, or `path.N` for the first N that does not exist yet."""
    n = 1
    candidate = path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate
