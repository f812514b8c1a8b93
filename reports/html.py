"""`index.html`: the report as one self-contained page, written beside `index.md`.

The page is `index.md` in HTML. Each figure is its SVG inlined in a `<figure>` whose
`<figcaption>` is the figure's title (the SVG keeps its words as text, axis labels included);
each table the index links (`tables/*.md`) follows under its own heading; a link to a figure or
table of the report becomes a link within the page. The page loads nothing: no `<img>`, no
stylesheet, script or font from elsewhere, no URL of any kind (the SVGs' XML prolog, metadata
and namespace declarations are dropped: the HTML parser puts `<svg>` in its namespace itself).
Every table sorts by its column at a click on the header (inline JavaScript; numbers by value,
"0.4 [0.2, 0.6]" by its 0.4, words after numbers).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import markdown

# An image line of index.md (`reports/index.py` writes one a PNG); the SVG beside it is inlined.
FIGURE_LINE = re.compile(r"^!\[(?P<title>.*)\]\(figures/(?P<stem>[^)]+)\.png\)$")
LINK = re.compile(r'<a href="(?P<href>[^"]*)">(?P<text>.*?)</a>', re.S)
# The report's own files, as index.md links them.
FILE_LINK = re.compile(r"^(?P<kind>figures|tables)/(?P<stem>.+)\.(?:png|svg|md)$")
# Parts of a matplotlib SVG that name a URL and that a page inside HTML does not need.
SVG_DROP = re.compile(
    r"<\?xml.*?\?>|<!DOCTYPE.*?>|<metadata>.*?</metadata>|\s+xmlns(?::\w+)?=\"[^\"]*\"", re.S
)
# Where an SVG names or refers to an id; prefixed per figure so that ids stay unique in the page.
SVG_ID = re.compile(r"(\bid=\"|href=\"#|url\(#)")

STYLE = """
body { font: 15px/1.45 sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; }
th { background: #f2f2f2; cursor: pointer; user-select: none; }
th[data-order="up"]::after { content: " \\25B2"; }
th[data-order="down"]::after { content: " \\25BC"; }
figure { margin: 1em 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-style: italic; }
code { background: #f6f6f6; }
"""

SORT_SCRIPT = """
function sortKey(row, col) {
  var text = row.cells[col] ? row.cells[col].textContent.trim() : "";
  var value = parseFloat(text.replace("\\u221e", "Infinity"));
  return isNaN(value) ? text : value;
}
document.querySelectorAll("table").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.title = "sort by this column";
    th.addEventListener("click", function () {
      var up = th.dataset.order !== "up";
      table.querySelectorAll("thead th").forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = up ? "up" : "down";
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = sortKey(a, col), y = sortKey(b, col);
        var order = typeof x !== typeof y ? (typeof x === "number" ? -1 : 1)
          : x < y ? -1 : x > y ? 1 : 0;
        return up ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _html(text: str) -> str:
    return markdown.markdown(text, extensions=["tables"], output_format="html")


def _svg(path: Path, prefix: str) -> str:
    """The SVG at `path` for inlining: no URL, ids prefixed with `prefix`."""
    return SVG_ID.sub(lambda m: m[1] + prefix, SVG_DROP.sub("", path.read_text())).strip()


def _figure(folder: Path, title: str, stem: str, number: int) -> str:
    svg = folder / "figures" / f"{stem}.svg"
    drawing = _svg(svg, f"f{number}-") if svg.is_file() else "<p>(its SVG was not written)</p>"
    caption = f"{html.escape(title)} <small>({html.escape(stem)})</small>"
    return (f'<figure id="figure-{html.escape(stem)}">\n{drawing}\n'
            f"<figcaption>{caption}</figcaption>\n</figure>")  # fmt: skip


def _table(folder: Path, stem: str) -> str:
    """A `tables/<stem>.md` file: its `# title` as a heading, then the rest of its text."""
    text = (folder / "tables" / f"{stem}.md").read_text()
    title = re.search(r"^# (.+)$", text, re.M)
    rest = text.replace(title[0], "", 1) if title else text
    heading = html.escape(title[1] if title else stem)
    return (
        f'<section id="table-{html.escape(stem)}">\n<h3>{heading}</h3>\n{_html(rest)}\n</section>'
    )


def _local_links(page: str, anchors: set[str]) -> str:
    """Links to the report's figures and tables point within the page; any other link that
    leaves the page is kept as its text only."""

    def local(m: re.Match[str]) -> str:
        href, text = html.unescape(m["href"]), m["text"]
        file = FILE_LINK.match(href)
        anchor = f"{file['kind'][:-1]}-{file['stem']}" if file else href.removeprefix("#")
        if (file or href.startswith("#")) and anchor in anchors:
            return f'<a href="#{html.escape(anchor)}">{text}</a>'
        return text

    return LINK.sub(local, page)


def write_page(index: Path) -> Path:
    """Write `index.html` beside `index` (an `index.md` with its figures/ and tables/); its path."""
    folder = index.parent
    text = index.read_text()
    figures: dict[str, str] = {}  # placeholder paragraph -> <figure>
    lines = []
    for line in text.splitlines():
        found = FIGURE_LINE.match(line)
        if found:
            key = f"FIGURE{len(figures)}PLACEHOLDER"
            figures[key] = _figure(folder, found["title"], found["stem"], len(figures))
            line = f"\n{key}\n"
        lines.append(line)
    body = _html("\n".join(lines))
    for key, figure in figures.items():
        body = body.replace(f"<p>{key}</p>", figure)
    linked = dict.fromkeys(re.findall(r"\]\(tables/([^)]+)\.md\)", text))
    stems = [s for s in linked if (folder / "tables" / f"{s}.md").is_file()]
    if stems:
        body += "\n<h2>Tables</h2>\n" + "\n".join(_table(folder, s) for s in stems)
    anchors = set(re.findall(r'<(?:figure|section) id="([^"]+)"', body))
    body = _local_links(body, anchors)
    heading = re.search(r"^# (.+)$", text, re.M)
    title = html.escape(heading[1] if heading else folder.name)
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            f"<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n")  # fmt: skip
    out = folder / "index.html"
    out.write_text(page)
    return out
