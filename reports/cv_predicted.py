"""Tables: cv-predicted's cost of a step against backprop's, and its variance against the closed
form, from `cv_predicted_cost.csv` and `cv_predicted_variance.csv`
(`python -m runners.study cv-predicted --out DIR`).

The cost table gives, per task, the FLOPs of a predict step (predictor and amortised refit
included) and the median time of a training step, each over backprop's, with the goals FLOP
ratio <= 0.6 and time ratio <= 1.2 x FLOP ratio; then peak memory and the predictor's buffer.
The variance table gives, per task and predictor, the measured relative variance over random
splits beside the closed form (1/c - 1/n) S_r^2 / ||g||^2, and the measured and effective
alignments beside the break-even alignment at the measured FLOP and time ratios.

`table` and `absent` are shared with `reports/cv_vit_digits.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from reports.load import Results
from reports.section import Section, skip, write_table
from reports.style import Style, fmt

COST, VARIANCE = "cv_predicted_cost.csv", "cv_predicted_variance.csv"
STUDY = "cv-predicted"
FLOP_GOAL, TIME_GOAL = 0.6, 1.2  # FLOP ratio at most; time ratio at most this x FLOP ratio

COST_TITLE = "Table: cv-predicted's cost of a step against backprop"
COST_QUESTION = (
    "Is a cv-predicted step (predictor fitted) cheaper than a backprop step in FLOPs, time and "
    "memory?"
)
COST_SOURCE = (
    f"{COST}, one row per task: FLOPs (`FlopCounterMode`) of a warm-up and of a predict step, "
    "the predictor's share and the refit amortised over `refit_every`, over backprop's step; "
    "`time_ratio`: median time of a training step over backprop's, the two interleaved "
    "(`repeats` rounds each); peak memory of one step (storage tracker on the CPU, allocator "
    f"on CUDA). Goals: FLOP ratio <= {FLOP_GOAL}, time ratio <= {TIME_GOAL} x FLOP ratio."
)
# (column, header) of the cost table, in the script's order
COST_COLUMNS = (
    ("task", "task"), ("batch", "batch"), ("fraction", "fraction"),
    ("bp_mflop", "backprop MFLOP"), ("warmup_flop_ratio", "warmup / bp"),
    ("predict_flop_ratio", "predict / bp"), ("predictor_flop_ratio", "of which predictor"),
    ("refit_flop_ratio", "refit / bp (amortised)"), ("flop_ratio", "FLOP ratio"),
    ("time_ratio", "time ratio"), ("time_per_flop_ratio", "time / FLOP ratio"),
    ("bp_step_ms", "bp step ms"), ("peak_mb_cv", "peak MB cv"), ("peak_mb_bp", "peak MB bp"),
    ("buffer_mb", "buffer MB"), ("repeats", "repeats"),
)  # fmt: skip

VAR_TITLE = "Table: cv-predicted's variance, measured against the closed form"
VAR_QUESTION = (
    "Does the closed form (1/c - 1/n) S_r^2 / ||g||^2 predict the variance over random splits, "
    "and does any predictor reach the break-even alignment?"
)
VAR_SOURCE = (
    f"{VARIANCE}, one row per task and predictor (float64 models after the backprop "
    "pre-training steps): `rel_var_measured` over `draws` random splits of one batch "
    "(`quality_by_layer`, total), `rel_var_closed` from per-example gradients; `alignment`: "
    "mean cos(g_pred(C), g_true(C)) over the draws; `eff_alignment` = sqrt(1 - S_r^2/S_t^2); "
    "break-even alignments at beta = 1 and the task's FLOP and time ratios from the cost table "
    "(∞: unreachable at that cost ratio)."
)
VAR_COLUMNS = (
    ("task", "task"), ("predictor", "predictor"), ("beta", "beta"), ("alignment", "alignment"),
    ("eff_alignment", "eff. alignment"), ("residual_ratio", "S_r^2/S_t^2"),
    ("rel_var_measured", "rel var measured"), ("rel_var_closed", "rel var closed form"),
    ("measured_over_closed", "measured/closed"), ("rel_bias", "rel bias"),
    ("break_even_flops", "break-even (FLOPs)"), ("break_even_time", "break-even (time)"),
)  # fmt: skip


def absent(file: str, study: str, folder: Path) -> str:
    """Why a section is skipped: the file is missing, and the command that writes it."""
    return (
        f"the results hold no {file} (write it with `python -m runners.study {study} "
        f"--out {folder}`)"
    )


def _cell(value: object) -> str:
    return fmt(float(value)) if isinstance(value, int | float) else str(value)


def table(frame: pd.DataFrame, columns: Sequence[tuple[str, str]]) -> str:
    """`frame`'s `columns` as a markdown pipe table, numbers to 3 significant digits."""
    body = [[_cell(r[c]) for c, _ in columns] for r in frame.to_dict("records")]
    return tabulate(body, headers=[h for _, h in columns], tablefmt="pipe",
                    disable_numparse=True)  # fmt: skip


def _cost_findings(cost: pd.DataFrame) -> list[str]:
    out = []
    for r in cost.to_dict("records"):
        flop, time = r["flop_ratio"], r["time_ratio"]
        met = (
            f"FLOP goal (<= {FLOP_GOAL}) {'met' if flop <= FLOP_GOAL else 'missed'}, time goal "
            f"(<= {TIME_GOAL} x FLOP ratio) {'met' if time <= TIME_GOAL * flop else 'missed'}"
        )
        out.append(
            f"On {r['task']} (batch {int(r['batch'])}, fraction {fmt(r['fraction'])}), a predict "
            f"step costs {fmt(flop)} of backprop's FLOPs and {fmt(time)} of its time "
            f"({fmt(r['time_per_flop_ratio'])} x the FLOP ratio; {met}); peak memory "
            f"{fmt(r['peak_mb_cv'])} MB against {fmt(r['peak_mb_bp'])} MB."
        )
    return out


def _variance_findings(var: pd.DataFrame) -> list[str]:
    ratio = var["measured_over_closed"]
    draws = sorted(var["draws"].unique())
    out = [
        f"Measured over closed-form variance ranges from {fmt(ratio.min())} to "
        f"{fmt(ratio.max())} (median {fmt(ratio.median())}) over {len(var)} rows, "
        f"{', '.join(str(int(d)) for d in draws)} draws each."
    ]
    for task, rows in var.groupby("task", sort=False):
        best = rows.sort_values("eff_alignment", na_position="first").iloc[-1]
        parts = []
        for kind, name in (("flops", "FLOP"), ("time", "time")):
            need = float(rows[f"break_even_{kind}"].iloc[0])
            above = rows[rows["eff_alignment"] > need]["predictor"].tolist()
            parts.append(f"{fmt(need)} at the measured {name} ratio (reached by "
                         f"{', '.join(above) if above else 'none'})")  # fmt: skip
        out.append(
            f"On {task}, the highest effective alignment is {fmt(best['eff_alignment'])} "
            f"({best['predictor']}); break-even needs {' and '.join(parts)}."
        )
    return out


def _section(
    res: Results,
    out: Path,
    file: str,
    text: tuple[str, str, str],
    columns: Sequence[tuple[str, str]],
    findings: Callable[[pd.DataFrame], list[str]],
) -> Section:
    """A table section of `file` (title, question, source in `text`), or a skip."""
    title, question, source = text
    frame = res.frame(file)
    if frame is None:
        return skip(title, question, source, absent(file, STUDY, res.folder))
    body = table(frame, columns)
    name = file.removesuffix(".csv").replace("_", "-")
    files = [write_table(out, name, title, source, body)]
    return Section(title, question, source, files, findings(frame), body=body)


def build(res: Results, style: Style, out: Path) -> list[Section]:
    cost = (COST_TITLE, COST_QUESTION, COST_SOURCE)
    var = (VAR_TITLE, VAR_QUESTION, VAR_SOURCE)
    return [
        _section(res, out, COST, cost, COST_COLUMNS, _cost_findings),
        _section(res, out, VARIANCE, var, VAR_COLUMNS, _variance_findings),
    ]
