"""`python -m reports --results results/NAME [--out DIR] [--summary] [--no-pages]`.

Builds the report of a results folder and prints the path of its index.md; `--summary` first
prints the closing table (one row per task and estimator setting, as the sweep ends with) and
`--no-pages` skips the report folder. A missing folder, or one that is not a results folder,
prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reports.build import build_reports
from reports.closing import closing_table
from reports.load import ReportError, load_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reports",
        description="Build tables, figures and index.md from a results folder (no re-runs).",
    )
    parser.add_argument("--results", type=Path, required=True, help="results folder of a sweep")
    parser.add_argument("--out", type=Path, help="report folder (default: reports/<results name>)")
    parser.add_argument("--summary", action="store_true", help="print the closing table first")
    parser.add_argument("--no-pages", action="store_true", help="do not write the report folder")
    args = parser.parse_args(argv)
    try:
        if args.summary:
            print(closing_table(load_results(args.results)))
        if not args.no_pages:
            print(f"report: {build_reports(args.results, args.out)}")
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
