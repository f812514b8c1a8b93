"""One part of a report: the question a table or figure answers, where its numbers come from,
the files it wrote and its findings, or why it was skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Section:
    """What `index.md` says of one table or figure.

    source: the results file(s) and the filter the numbers were taken from.
    files: paths written, relative to the report folder (PNG and SVG of a figure, tables).
    findings: sentences, each with its numbers.
    body: markdown shown under the findings (an inline table).
    skipped: why nothing was drawn (the data is absent from the results); None when drawn.
    lead: a paragraph `index.md` puts at its top, before everything else ("" for none).
    """

    title: str
    question: str
    source: str
    files: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    body: str = ""
    skipped: str | None = None
    lead: str = ""


def skip(title: str, question: str, source: str, reason: str) -> Section:
    """A section whose data is absent: a line in the index saying why, never an error."""
    return Section(title, question, source, skipped=reason)


def write_table(out: Path, name: str, title: str, source: str, text: str) -> str:
    """Write a section's table to `tables/<name>.md` under `out`; its path relative to `out`."""
    path = f"tables/{name}.md"
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / path).write_text(f"# {title.removeprefix('Table: ')}\n\nSource: {source}\n\n{text}\n")
    return path
