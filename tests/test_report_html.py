"""`index.html`: the report as one self-contained page (`reports/html.py`).

Built from the synthetic results folder of `test_reports.py` (its fixtures, imported). Read
twice: with Python's `html.parser` (always), and opened in headless Chromium through Playwright
(skipped, saying why, where either is absent).
"""

from __future__ import annotations

import itertools
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_reports import report, results  # noqa: F401 (fixtures: the report of a results folder)

from reports.html import write_page

if TYPE_CHECKING:
    from playwright.sync_api import Browser
    from playwright.sync_api import Page as BrowserPage

URL_ATTRS = {"src", "href", "xlink:href", "srcset", "action", "poster", "data", "formaction"}
VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "embed", "source",
        "track", "wbr"}  # fmt: skip
AXES = re.compile(r"-axes_\d+$")
AXIS = re.compile(r"-matplotlib\.axis_\d+$")
TEXT_GROUP = re.compile(r"-text_\d+$")


@dataclass
class Figure:
    """One <figure>: its caption, its inline SVGs, its words, and per axes the label of each
    of its axes (x then y; "" for an axis drawn without a label)."""

    id: str
    caption: str = ""
    svgs: int = 0
    texts: list[str] = field(default_factory=list)
    axes: dict[str, dict[str, str]] = field(default_factory=dict)


class Page(HTMLParser):
    """What the tests read of the page: every URL an attribute or a style names, the ids, the
    figures, each table's header cells, and the scripts' text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str]] = []  # open elements: (tag, id)
        self.urls: list[str] = []
        self.ids: list[str] = []
        self.tags: set[str] = set()
        self.figures: list[Figure] = []
        self.headers: list[list[str]] = []  # per table, its <thead> cells
        self.body_rows: list[int] = []  # per table, its <tbody> rows
        self.scripts: list[str] = []
        self.feed(text)
        self.close()

    def _attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> str:
        self.tags.add(tag)
        values = {k: v or "" for k, v in attrs}
        self.urls += [v for k, v in values.items() if k in URL_ATTRS]
        for value in values.values():  # style="...url(#a)", clip-path="url(#a)", ...
            self.urls += re.findall(r"url\(\s*['\"]?([^)'\"]*)", value)
        if "id" in values:
            self.ids.append(values["id"])
        return values.get("id", "")

    def _inside(self, tag: str) -> bool:
        return any(t == tag for t, _ in self.stack)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        id_ = self._attrs(tag, attrs)
        if tag == "figure":
            self.figures.append(Figure(id_))
        elif tag == "svg" and self._inside("figure"):
            self.figures[-1].svgs += 1
        elif tag == "table":
            self.headers.append([])
            self.body_rows.append(0)
        elif tag == "th" and self._inside("thead"):
            self.headers[-1].append("")
        elif tag == "tr" and self._inside("tbody"):
            self.body_rows[-1] += 1
        elif tag == "g" and AXIS.search(id_):
            axes = next(i for t, i in reversed(self.stack) if t == "g" and AXES.search(i))
            self.figures[-1].axes.setdefault(axes, {})[id_] = ""
        if tag not in VOID:
            self.stack.append((tag, id_))

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        tags = [t for t, _ in self.stack]
        if tags and tags[-1] == "style":
            self.urls += re.findall(r"url\(\s*['\"]?([^)'\"]*)", data)
        elif tags and tags[-1] == "script":
            self.scripts.append(data)
        elif "figcaption" in tags:
            self.figures[-1].caption += data
        elif tags and tags[-1] == "text" and "svg" in tags:
            self.figures[-1].texts.append(data)
            self._axis_label(data)
        elif "th" in tags and "thead" in tags:
            self.headers[-1][-1] += data.strip()

    def _axis_label(self, data: str) -> None:
        """An axis label is the text of a `text_N` group directly inside a `matplotlib.axis_N`
        group (tick labels sit one level deeper, in `xtick_N` / `ytick_N`)."""
        ids = [i for t, i in self.stack if t == "g"]
        for axis, child in itertools.pairwise(ids):
            if AXIS.search(axis) and TEXT_GROUP.search(child):
                for labels in self.figures[-1].axes.values():
                    if axis in labels:
                        labels[axis] += data


def labelled(panels: list[list[str]]) -> bool:
    """Whether a figure's panels (each its x and y label, "" where none) are labelled: every
    panel names at least one of its axes, and the figure names an x and a y axis somewhere
    (small multiples that share an axis label it on one panel)."""
    return (
        bool(panels)
        and all(x or y for x, y in panels)
        and any(x for x, _ in panels)
        and any(y for _, y in panels)
    )


@pytest.fixture(scope="module")
def page(report: Path) -> Path:  # noqa: F811 (the imported fixture)
    return report.parent / "index.html"


@pytest.fixture(scope="module")
def parsed(page: Path) -> Page:
    return Page(page.read_text())


def test_the_page_is_written_beside_index_md_and_names_nothing_outside_itself(
    page: Path, parsed: Page
) -> None:
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "img" not in parsed.tags and "link" not in parsed.tags and "iframe" not in parsed.tags
    assert "://" not in text  # no URL of any scheme, not even an SVG namespace or DTD
    assert parsed.urls, "the page links within itself (Contents)"
    outside = [u for u in parsed.urls if not u.startswith(("#", "data:"))]
    assert outside == []
    dangling = {u[1:] for u in parsed.urls if u.startswith("#")} - set(parsed.ids)
    assert dangling == set()
    assert len(parsed.ids) == len(set(parsed.ids)), "ids are unique across the inlined SVGs"


def test_every_figure_has_a_caption_and_its_svg_inline_with_axis_labels(
    page: Path, parsed: Page
) -> None:
    svgs = sorted((page.parent / "figures").glob("*.svg"))
    assert {f.id for f in parsed.figures} == {f"figure-{s.stem}" for s in svgs}
    for figure in parsed.figures:
        stem = figure.id.removeprefix("figure-")
        assert figure.caption.strip().startswith("Figure"), figure.id
        assert figure.svgs == 1, figure.id
        # the words of the SVG file, every one of them in the page
        svg = ET.parse(page.parent / "figures" / f"{stem}.svg").getroot()
        words = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text") if t.text]
        assert figure.texts == words, figure.id
        assert figure.axes, f"{figure.id} has no axes"
        panels = [[label.strip() for label in labels.values()] for labels in figure.axes.values()]
        assert all(len(labels) == 2 for labels in panels), figure.id
        assert labelled(panels), (figure.id, panels)


def test_the_axis_labels_read_are_the_ones_drawn(parsed: Page) -> None:
    """One figure checked by hand: the first panel of accuracy against time."""
    figure = next(f for f in parsed.figures if f.id == "figure-accuracy-vs-time")
    first = next(iter(figure.axes.values()))
    assert [s.strip() for s in first.values()] == [
        "training time (s, evaluation excluded)", "validation accuracy"]  # fmt: skip


def test_tables_have_headers_and_sort_at_a_click(page: Path, parsed: Page) -> None:
    index = (page.parent / "index.md").read_text()
    linked = set(re.findall(r"\]\(tables/([^)]+)\.md\)", index))
    assert linked and {f"table-{s}" for s in linked} <= set(parsed.ids)
    assert len(parsed.headers) >= len(linked)
    for header, rows in zip(parsed.headers, parsed.body_rows, strict=True):
        assert header and all(header), header
        assert rows >= 1
    script = "".join(parsed.scripts)
    assert 'querySelectorAll("thead th")' in script and "addEventListener" in script


def test_links_leaving_the_page_are_kept_as_text(tmp_path: Path) -> None:
    """Also: a table page that starts with a warning (`reports.__main__.warn_pages`) keeps its
    title as the heading and the warning above its table."""
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "t.md").write_text(
        "> **Warning: damaged**\n\n# Table: t\n\nSource: x\n\n| a | b |\n|--|--|\n| 1 | 2 |\n"
    )
    (tmp_path / "index.md").write_text(
        "# Report: r\n\n- [t.md](tables/t.md), [elsewhere](https://example.org/x), "
        "[gone](tables/absent.md), [f.png](figures/f.png)\n"
    )
    text = write_page(tmp_path / "index.md").read_text()
    assert '<a href="#table-t">t.md</a>' in text
    assert "elsewhere" in text and "example.org" not in text
    assert "absent" not in text and "gone" in text and "f.png" in text
    assert Page(text).urls == ["#table-t"]
    assert "<h3>Table: t</h3>\n<blockquote>\n<p><strong>Warning: damaged</strong>" in text


SVG = """<?xml version="1.0" encoding="utf-8" standalone="no"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"
  "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<svg xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 10 10" xmlns="http://www.w3.org/2000/svg">
 <metadata><rdf:RDF xmlns:dc="http://purl.org/dc/elements/1.1/"></rdf:RDF></metadata>
 <defs><clipPath id="p1"><rect width="5" height="5"/></clipPath><path id="m1" d="M 0 0"/></defs>
 <g id="axes_1" clip-path="url(#p1)"><use xlink:href="#m1"/><text>x</text></g>
</svg>
"""


def test_a_figure_is_inlined_without_urls_and_with_its_ids_made_its_own(tmp_path: Path) -> None:
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.svg").write_text(SVG)
    figure = "![Figure: accuracy [95% CI]](figures/a.png)"
    (tmp_path / "index.md").write_text(f"# Report: r\n\n{figure}\n{figure}\n")
    text = write_page(tmp_path / "index.md").read_text()
    parsed = Page(text)
    assert "://" not in text and "<?xml" not in text and "metadata" not in text
    assert [f.caption.split(" (")[0] for f in parsed.figures] == ["Figure: accuracy [95% CI]"] * 2
    assert [f.svgs for f in parsed.figures] == [1, 1]
    assert parsed.ids == ["figure-a", "f0-p1", "f0-m1", "f0-axes_1",
                          "figure-a", "f1-p1", "f1-m1", "f1-axes_1"]  # fmt: skip
    assert sorted(parsed.urls) == ["#f0-m1", "#f0-p1", "#f1-m1", "#f1-p1"]


def _chromium() -> str:
    """The path of a headless Chromium on PATH, or the test is skipped saying how to get one."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
    for name in ("chromium-headless-shell", "chromium"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on PATH: apt-get install chromium-headless-shell (or chromium)")


IN_BROWSER = """async () => {
  const label = (axis) => {
    const text = axis.querySelector(":scope > g[id*='-text_'] text");
    if (!text) return null;
    const box = text.getBBox();
    return {text: text.textContent.trim(), width: box.width, height: box.height};
  };
  const figures = Array.from(document.querySelectorAll("figure")).map((f) => {
    const svg = f.querySelector("svg"), box = svg ? svg.getBoundingClientRect() : null;
    const axes = Array.from(f.querySelectorAll("svg g[id*='-axes_']"))
      .map((g) => Array.from(g.querySelectorAll(":scope > g[id*='matplotlib.axis_']")).map(label))
      .filter((labels) => labels.length > 0);
    const caption = f.querySelector("figcaption");
    return {id: f.id, caption: caption ? caption.textContent.trim() : "",
            width: box ? box.width : 0, height: box ? box.height : 0, axes};
  });
  const images = [];
  for (const el of document.querySelectorAll("img, image")) {
    const img = new Image();
    img.src = el.src || el.href.baseVal;
    images.push(await img.decode().then(() => img.src, () => "broken: " + img.src));
  }
  return {figures, images};
}"""

COLUMN = """([table, col]) => Array.from(document.querySelectorAll("table")[table].tBodies[0].rows)
  .map((row) => row.cells[col].textContent.trim())"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--disable-gpu"])
        yield chromium
        chromium.close()


def _open(browser: Browser, page: Path) -> tuple[BrowserPage, list[str], list[str]]:
    """`page` in a new tab; the URLs it requested and the errors it logged, as they come."""
    tab = browser.new_page()
    requests: list[str] = []
    errors: list[str] = []
    tab.on("request", lambda r: requests.append(r.url))
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.goto(page.as_uri())
    return tab, requests, errors


def test_in_headless_chromium_nothing_is_broken_and_every_figure_is_labelled(
    browser: Browser, page: Path
) -> None:
    tab, requests, errors = _open(browser, page)
    seen = tab.evaluate(IN_BROWSER)
    assert requests == [page.as_uri()], "the page loads nothing but itself"
    assert errors == []
    assert all(not i.startswith("broken") for i in seen["images"])
    assert len(seen["figures"]) == len(list((page.parent / "figures").glob("*.svg")))
    for figure in seen["figures"]:
        assert figure["caption"].startswith("Figure"), figure["id"]
        assert figure["width"] > 100 and figure["height"] > 100, figure["id"]
        drawn = [[label for label in labels if label] for labels in figure["axes"]]
        for label in (label for labels in drawn for label in labels):
            assert label["width"] > 0 and label["height"] > 0, (figure["id"], label)
        panels = [[label["text"] if label else "" for label in labels] for labels in figure["axes"]]
        assert all(len(labels) == 2 for labels in panels), figure["id"]
        assert labelled(panels), (figure["id"], panels)
    # the estimator-settings table (the page's second), by its params column: up, then down
    before = tab.evaluate(COLUMN, [1, 2])
    header = tab.locator("table").nth(1).locator("thead th").nth(2)
    header.click()
    up = tab.evaluate(COLUMN, [1, 2])
    header.click()
    assert before != sorted(before) and up == sorted(before)
    assert tab.evaluate(COLUMN, [1, 2]) == up[::-1]


def test_in_headless_chromium_numbers_sort_by_value_and_words_after_them(
    browser: Browser, tmp_path: Path
) -> None:
    cells = ["10", "-", "0.4 [0.2, 0.6]", "∞", "9 (noisy)", "-∞"]
    rows = "".join(f"| {c} |\n" for c in cells)
    (tmp_path / "index.md").write_text(f"# Report: r\n\n| value |\n|--:|\n{rows}")
    tab, _, errors = _open(browser, write_page(tmp_path / "index.md"))
    tab.locator("th").click()
    assert tab.evaluate(COLUMN, [0, 0]) == ["-∞", "0.4 [0.2, 0.6]", "9 (noisy)", "10", "∞", "-"]
    assert errors == []
