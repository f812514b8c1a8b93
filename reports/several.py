"""Several results folders read as one report: `python -m reports --results A B ...`.

The folders are merged exactly as `python -m runners.merge` merges them (the same agreement
checks: each task's budget and data, the draws, the device kind, the TF32 policy, the protocol;
a cell in two folders with different results), into a temporary folder that the report then
reads. The merge runs as its own process, as the sweep runs the report: the reports import
nothing from the runners. A refusal is the merge's one line, raised as a `ReportError`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reports.load import ReportError


def merged(folders: list[Path], into: Path) -> Path:
    """Merge `folders` into a new folder under `into`, named after them ("A+B"); its path."""
    out = into / "+".join(folder.name for folder in folders)
    command = [sys.executable, "-m", "runners.merge", str(out), *map(str, folders)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise ReportError(f"cannot read {len(folders)} folders as one: "
                          f"{lines[-1].removeprefix('error: ')}")  # fmt: skip
    return out
