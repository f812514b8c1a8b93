"""`python -m reports --results results/NAME [--out DIR]`: build the report of a results folder.

Prints the path of the report's index.md. A missing folder, or one that is not a results
folder, prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reports.build import build_reports
from reports.load import ReportError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reports",
        description="Build tables, figures and index.md from a results folder (no re-runs).",
    )
    parser.add_argument("--results", type=Path, required=True, help="results folder of a sweep")
    parser.add_argument("--out", type=Path, help="report folder (default: reports/<results name>)")
    args = parser.parse_args(argv)
    try:
        index = build_reports(args.results, args.out)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
