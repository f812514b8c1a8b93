"""Table: the low-rank first-layer weight gradient against the full one, by layer size.

Reads `lowrank_layer.csv` (`python -m runners.study lowrank-layer --out DIR`): per layer size and
rank, the FLOP ratio and the ratio of median times of the two ways, timed interleaved in one run.
"""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from reports.load import Results
from reports.section import Section, skip
from reports.style import Style, fmt

TITLE = "Table: low-rank weight gradient of one first layer"
QUESTION = "At what layer size does the low-rank gradient's FLOP saving become a time saving?"
SOURCE = (
    "lowrank_layer.csv (written by `python -m runners.study lowrank-layer --out DIR`), every row: "
    "forward + weight/bias backward of one Linear layer, lowrank over plain; time = ratio of "
    "median times over `repeats` interleaved rounds."
)
FILE = "lowrank_layer.csv"


def build(res: Results, style: Style, out: Path) -> list[Section]:
    rows = res.frame(FILE)
    if rows is None:
        return [skip(TITLE, QUESTION, SOURCE, f"the results hold no {FILE}")]
    table = [
        [int(r.fan_in), int(r.fan_out), int(r.k), int(r.batch), fmt(r.flop_ratio),
         fmt(r.plain_us), fmt(r.lowrank_us), fmt(r.time_ratio), int(r.repeats)]
        for r in rows.itertuples()
    ]  # fmt: skip
    headers = ["in", "out", "k", "batch", "FLOPs ×", "plain µs", "lowrank µs", "time ×", "rounds"]
    text = tabulate(table, headers=headers, tablefmt="pipe", disable_numparse=True)
    faster = rows[rows["time_ratio"] < 1]
    if len(faster):
        first = faster.loc[(faster["fan_in"] * faster["fan_out"]).idxmin()]
        finding = (
            f"The smallest layer where the low-rank way is faster: {int(first.fan_in)} → "
            f"{int(first.fan_out)} at k = {int(first.k)}, time {fmt(first.time_ratio)}× for "
            f"FLOPs {fmt(first.flop_ratio)}×."
        )
    else:
        finding = (
            f"The low-rank way is slower at every size measured (time {fmt(rows.time_ratio.min())}"
            f"–{fmt(rows.time_ratio.max())}× for FLOPs {fmt(rows.flop_ratio.min())}–"
            f"{fmt(rows.flop_ratio.max())}×)."
        )
    return [Section(TITLE, QUESTION, SOURCE, findings=[finding], body=text)]
