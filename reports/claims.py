"""Section: the source claims of issue 16, each re-measured on the sweep's tables and given a
verdict (`reports.verdict`) with its numbers and 95% intervals.

Each paper's claims, their measurements and checks are one module:
1a-1c `reports.claim_cv` (cv-predicted, Ciosek, Felicioni and Elenter Litwin),
2a-2d `reports.claim_wperp` (W-perp, Wang, Markou and Campbell),
3a-3c `reports.claim_sparse` (sparse VJPs, Bakong et al.),
4a-4c `reports.claim_svd` (subspace projection, the SVD-subspace blog post).
This module orders them and builds the section.
"""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from reports import claim_cv, claim_sparse, claim_svd, claim_wperp
from reports.claim_rows import PRESET
from reports.load import Results
from reports.section import Section, skip
from reports.style import Style
from reports.verdict import Claim, Verdict

TITLE = "Claims"
QUESTION = "Do the source papers' claims hold on these results?"
SOURCE = (
    'train.csv, quality.csv (last checkpoint, `layer == "total"`), cost.csv, diagnostics.csv, '
    "wperp_overlap.csv, blog.csv, cv_predicted_variance.csv; intervals: 95% Student-t over seeds "
    "for means and paired differences over seeds (over examples for wperp_overlap.csv, over "
    "predictors for cv_predicted_variance.csv), the envelope of the seeds' 95% draw intervals "
    "for a single setting's quality.csv statistic, the cost cell's interval for time ratios. A "
    'task counts for a claim only when the interval decides it (docs/protocol.md, "Claims").'
)
PAPERS = (claim_cv, claim_wperp, claim_sparse, claim_svd)
CLAIMS: tuple[Claim, ...] = tuple(c for paper in PAPERS for c in paper.CLAIMS)


def verdicts(res: Results) -> list[Verdict]:
    """Every claim's verdict on `res`, in the order of issue 16 (that of `CLAIMS`)."""
    return [v for paper in PAPERS for v in paper.verdicts(res)]


def build(res: Results, style: Style, out: Path) -> list[Section]:
    if not any(f in res.frames for f in ("train.csv", "quality.csv", "cost.csv")):
        return [skip(TITLE, QUESTION, SOURCE, "the results hold no train.csv, quality.csv or "
                     f"cost.csv rows (run `{PRESET}`)")]  # fmt: skip
    found = verdicts(res)
    body = tabulate([[c.name, c.statement, v.word] for c, v in zip(CLAIMS, found, strict=True)],
                    headers=["claim", "statement", "verdict"], tablefmt="pipe")  # fmt: skip
    return [Section(TITLE, QUESTION, SOURCE, findings=[v.sentence for v in found], body=body)]
