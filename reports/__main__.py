"""`python -m reports --results results/NAME [--out DIR] [--summary] [--no-pages] [...]`.

Builds the report of a results folder and prints the path of its index.md; `--summary` first
prints the closing table (one row per task and estimator setting, as the sweep ends with) and
`--no-pages` skips the report folder. A missing folder, one that is not a results folder, or one
whose tables disagree with its manifest (rows missing, extra, changed or cut off: repair it with
`python -m runners.sweep --resume`) prints one line on stderr and exits with status 2;
`--allow-damaged` builds the report of a damaged folder anyway, with a warning on every page.
`--results A B ...` reports on several folders as one, merged as `python -m runners.merge` merges
them (`reports.several`; default report folder `reports/A+B`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from measurements.schema import audit, manifest_problem
from reports.build import build_reports
from reports.closing import closing_table
from reports.html import write_page
from reports.load import ReportError, Results, load_results
from reports.several import merged
from tasks.boundary import Parser, run_command


def parser() -> Parser:
    """The command line (`--debug` included; errors are one line)."""
    parser = Parser(
        prog="python -m reports",
        description="Build tables, figures and index.md from a results folder (no re-runs).",
    )
    parser.add_argument(
        "--results",
        type=Path,
        nargs="+",
        required=True,
        help="results folder of a sweep; several are merged as python -m runners.merge does",
    )
    parser.add_argument("--out", type=Path, help="report folder (default: reports/<results name>)")
    parser.add_argument("--summary", action="store_true", help="print the closing table first")
    parser.add_argument("--no-pages", action="store_true", help="do not write the report folder")
    parser.add_argument(
        "--allow-damaged",
        action="store_true",
        help="build the report of a folder whose tables disagree with its manifest (warned)",
    )
    return parser


def damage(results: Results) -> str:
    """What is wrong with the folder's tables against its manifest ("" when nothing)."""
    problem = manifest_problem({"cells": {}, **results.manifest})
    if problem:
        raise ReportError(f"{results.folder}/manifest.json is corrupt: {problem}")
    return audit(results.folder, {"cells": {}, **results.manifest}).summary()


def warn_pages(index: Path, warning: str) -> None:
    """Put `warning` at the top of every page of the report whose index is `index`."""
    for page in [index, *sorted((index.parent / "tables").glob("*.md"))]:
        page.write_text(f"> **Warning: {warning}**\n\n{page.read_text()}")
    write_page(index)  # index.html again, with the warnings


def report(args: argparse.Namespace) -> int:
    results = load_results(args.results)
    damaged = damage(results)
    if damaged and not args.allow_damaged:
        raise ReportError(
            f"{args.results} is damaged ({damaged}); repair it with python -m runners.sweep "
            f"--resume --out {args.results}, or pass --allow-damaged"
        )
    warning = f"{args.results} is damaged, numbers may be missing or wrong: {damaged}"
    if damaged:
        print(f"warning: {warning}", file=sys.stderr)
    if args.summary:
        print(closing_table(results))
    if not args.no_pages:
        try:
            index = build_reports(args.results, args.out)
            if damaged:
                warn_pages(index, warning)
        except OSError as exc:
            where = exc.filename or args.out
            raise ReportError(f"cannot write the report ({where}: {exc.strerror})") from None
        print(f"report: {index}")
    return 0


def report_of_several(args: argparse.Namespace) -> int:
    """The report of one results folder, or of several merged into a temporary one."""
    if len(args.results) == 1:
        return report(argparse.Namespace(**{**vars(args), "results": args.results[0]}))
    with tempfile.TemporaryDirectory(prefix="cheapgrad-merged-") as tmp:
        folder = merged(args.results, Path(tmp))
        return report(argparse.Namespace(**{**vars(args), "results": folder}))


def main(argv: list[str] | None = None) -> int:
    return run_command(parser(), report_of_several, (ReportError,), argv)


if __name__ == "__main__":
    sys.exit(main())
