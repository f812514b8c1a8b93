"""Reports: markdown tables, figures and an index built from a sweep's results folder.

    python -m reports --results results/quick [--out DIR]

Everything is read from the tidy CSVs and manifest.json (docs/protocol.md); nothing is re-run.
"""

from reports.build import build_reports
from reports.load import ReportError

__all__ = ["ReportError", "build_reports"]
