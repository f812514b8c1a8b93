"""The results schema: every table's columns, the manifest's name, and what rows mean.

This module is what the reports read a results folder with; it imports nothing from the sweep
or the measurements. Time and FLOPs to a target and the rate a tuning run picks are defined here
once, from `train.csv` / `tuning.csv` rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
# Columns added by protocol 2 (intervals, bias test, exact work-MSE yardstick, linear-algebra and
# elementwise FLOPs, A/A-controlled timing). A folder written before them still loads in the
# reports, the missing columns read as absent (NaN).
ADDED_IN_2: dict[str, tuple[str, ...]] = {
    "quality.csv": ("rel_bias_se", "bias_stat", "bias_p", "work_mse_lo", "work_mse_hi",
                    "work_scale", "work_floor"),
    "cost.csv": ("elementwise", "elementwise_ratio", "step_seconds_median", "time_ratio_lo",
                 "time_ratio_hi", "aa_ratio", "pairs", "noisy", "prime_flops", "prime_seconds"),
}  # fmt: skip
_TRAIN = ("task", "estimator", "params", "seed", "lr", "step", "seconds", "flops", "train_loss",
          "val_acc", "status", "cell")  # fmt: skip
COLUMNS: dict[str, tuple[str, ...]] = {
    "train.csv": _TRAIN,
    "tuning.csv": _TRAIN,
    "diagnostics.csv": ("task", "estimator", "params", "seed", "lr", "step", "name", "value",
                        "cell"),
    "quality.csv": ("task", "estimator", "params", "seed", "checkpoint", "layer", "cosine",
                    "cosine_lo", "cosine_hi", "rel_bias", "rel_bias_se", "bias_stat", "bias_p",
                    "rel_variance", "rel_mse", "rel_mse_lo", "rel_mse_hi", "work_mse",
                    "work_mse_lo", "work_mse_hi", "work_scale", "work_floor", "draws",
                    "cell"),
    "cost.csv": ("task", "estimator", "params", "device", "flops", "elementwise",
                 "flop_ratio", "elementwise_ratio", "step_seconds", "step_seconds_median",
                 "time_ratio", "time_ratio_lo", "time_ratio_hi", "aa_ratio", "pairs", "noisy",
                 "prime_flops", "prime_seconds", "peak_bytes", "memory_ratio", "cell"),
}  # fmt: skip
# The scaling cells' rows: a cost row with the model family, its size axis and the size.
COLUMNS["scaling.csv"] = ("family", "axis", "size", *COLUMNS["cost.csv"])

# The studies' tables (`python -m runners.study`), not one row per task and estimator setting.
BLOG_COLUMNS: tuple[str, ...] = (
    "dataset", "label", "seed", "lr", "baseline_acc", "svd_acc", "delta_acc", "wgrad_flop_change",
    "step_flop_change", "step_time_change", "run_flop_change", "refits", "error",
    "blog_baseline_acc", "blog_svd_acc", "blog_grad_flop_change", "blog_time_change",
)  # fmt: skip
STUDY_COLUMNS: dict[str, tuple[str, ...]] = {
    "blog.csv": BLOG_COLUMNS,
    "cv_predicted_cost.csv": ("task", "batch", "params", "fraction", "seed", "device", "threads",
                              "repeats", "bp_mflop", "warmup_flop_ratio", "predict_flop_ratio",
                              "predictor_flop_ratio", "refit_flop_ratio", "flop_ratio",
                              "time_ratio", "time_per_flop_ratio", "bp_step_ms", "cv_step_ms",
                              "peak_mb_cv", "peak_mb_bp", "buffer_mb"),
    "cv_predicted_variance.csv": ("task", "batch", "control", "fraction", "seed", "device",
                                  "draws", "predictor", "buffer", "params", "beta", "alignment",
                                  "eff_alignment", "residual_ratio", "rel_var_measured",
                                  "rel_var_closed", "measured_over_closed", "rel_bias",
                                  "flop_ratio", "time_ratio", "break_even_flops",
                                  "break_even_time"),
    "cv_vit_digits_evals.csv": ("task", "learner", "fraction", "seed", "device", "threads",
                                "estimator", "params", "step", "seconds", "flops", "train_loss",
                                "val_acc", "status", "alignment", "residual"),
    "cv_vit_digits_budget.csv": ("task", "learner", "fraction", "seed", "device", "threads",
                                 "budget_s", "budget_fraction", "seconds", "val_acc"),
    "cv_vit_digits_reach.csv": ("task", "learner", "fraction", "seed", "device", "threads",
                                "target", "seconds", "flops", "step", "reached"),
    "cv_vit_digits_runs.csv": ("task", "learner", "fraction", "seed", "device", "threads",
                               "budget_s", "steps", "seconds", "ms_per_step", "time_ratio",
                               "final_acc", "status", "alignment", "residual", "break_even_time",
                               "break_even_nominal"),
    "fg_cost.csv": ("task", "batch", "device", "threads", "estimator", "pass_ratio", "noise_share",
                    "pass_less_noise_ratio", "estimate_ratio", "flop_ratio", "subspace_share",
                    "forward_ms", "repeats"),
    "fg_memory.csv": ("task", "batch", "device", "estimator", "params_grads_mb", "peak_mb",
                      "peak_ratio", "created_mb", "created_ratio"),
    "fg_quality.csv": ("task", "steps", "batch", "draws", "estimator", "layer", "cosine",
                       "cosine_lo", "cosine_hi", "rel_bias", "rel_variance", "rel_mse"),
    "fg_overlap.csv": ("task", "steps", "batch", "estimator", "layer", "factor_rows",
                       "factor_cols", "mean_overlap", "min_overlap"),
    "fg_ns.csv": ("task", "steps", "layer", "factor_rows", "factor_cols", "sites", "estimator",
                  "k", "device", "threads", "svd_s", "gram_s", "ns_s", "svd_over_ns",
                  "gram_over_ns", "ns_mean_overlap", "ns_min_overlap", "gram_min_overlap",
                  "repeats"),
    "fg_draws.csv": ("task", "estimator", "params", "batch", "draws", "device", "threads",
                     "single_s", "batched_s", "speedup", "repeats"),
    "lowrank_layer.csv": ("fan_in", "fan_out", "k", "batch", "threads", "device", "flop_ratio",
                          "plain_us", "lowrank_us", "time_ratio", "repeats"),
    "quality_draws.csv": ("task", "estimator", "params", "batch", "draws", "device", "threads",
                          "single_s", "batched_s", "speedup", "repeats"),
    "sparse_vjp_cost.csv": ("task", "batch", "keep", "axis", "sketch", "device", "threads",
                            "dense_bwd_ms", "bwd_time_ratio", "bwd_flop_ratio", "step_time_ratio",
                            "step_flop_ratio", "time_flop_ratio", "repeats", "calls"),
    "sparse_vjp_variance.csv": ("task", "layer", "keep", "axis", "sketch", "draws", "device",
                                "rel_variance"),
    "sparse_vjp_tradeoff.csv": ("task", "keep", "estimator", "sketch", "axis", "seed", "lr",
                                "batch", "budget_steps", "target", "reached", "steps_to_target",
                                "epochs_to_target", "seconds_to_target", "flops_to_target",
                                "step_seconds", "final_acc", "status", "device", "threads"),
    "wperp_overlap.csv": ("task", "width", "steps", "layer", "k", "overlap", "lo", "hi",
                          "examples"),
}  # fmt: skip


def to_target(rows: Iterable[Mapping[Any, Any]], target: float) -> dict[str, float]:
    """Seconds, FLOPs and step of the first eval with val_acc >= target (inf if never)."""
    for row in rows:
        if float(row["val_acc"]) >= target:
            return {"seconds": float(row["seconds"]), "flops": float(row["flops"]),
                    "step": float(row["step"])}  # fmt: skip
    return {"seconds": math.inf, "flops": math.inf, "step": math.inf}


def final_accuracy(rows: Sequence[Mapping[Any, Any]]) -> float:
    """The last eval's val_acc; -inf for a run that diverged or logged nothing."""
    if not rows or rows[-1]["status"] == "diverged":
        return -math.inf
    acc = float(rows[-1]["val_acc"])
    return acc if math.isfinite(acc) else -math.inf


def best_rate(runs: Mapping[float, Sequence[Mapping[Any, Any]]], target: float) -> float:
    """The rate whose run reached `target` soonest; among runs that never did, the best final."""
    return min(
        runs, key=lambda lr: (to_target(runs[lr], target)["seconds"], -final_accuracy(runs[lr]))
    )


# Integrity: the manifest records, for each done cell, its rows in each table it wrote (count and
# a digest of their text), so that a results folder can be checked against it (`audit`).
def row_text(fields: Sequence[str]) -> str:
    """One table row as the sweep writes it (CSV, minimal quoting, "\\n" ending)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def tally(rows: Sequence[str]) -> dict[str, Any]:
    """What the manifest records of a cell's rows in one table: their count and digest."""
    digest = hashlib.sha256("".join(rows).encode()).hexdigest()[:16]
    return {"count": len(rows), "digest": digest}


def manifest_problem(manifest: object) -> str | None:
    """What is wrong with the shape of a parsed `manifest.json` (None when it is sound)."""
    if not isinstance(manifest, dict):
        return f"it is a JSON {type(manifest).__name__}, not an object"
    for key in ("config", "cells"):
        if key not in manifest:
            return f"it lacks {key!r}"
        if not isinstance(manifest[key], dict):
            return f"its {key!r} is a {type(manifest[key]).__name__}, not an object"
    for key, cell in manifest["cells"].items():
        if not isinstance(cell, dict) or not isinstance(cell.get("status"), str):
            return f"cell {key!r} has no status"
        if not isinstance(cell.get("rows", {}), dict):
            return f"cell {key!r} has malformed row counts"
    return None


@dataclass
class Audit:
    """How a results folder's sweep tables (`COLUMNS`) agree with its manifest.

    torn: tables whose last row was cut off mid-write (no final newline): that row is partial.
    unfinished: cells not marked done that have rows (left by an interruption between a cell's
        table writes and its manifest entry, which is always written last).
    damaged: done cells whose rows differ from what the manifest recorded (missing, extra or
        changed rows).
    problems: what no re-run can repair (unreadable tables, rows of unknown cells), one line each.
    """

    torn: list[str] = field(default_factory=list)
    unfinished: set[str] = field(default_factory=set)
    damaged: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not (self.torn or self.unfinished or self.damaged or self.problems)

    def summary(self) -> str:
        """One line saying what is wrong ("" when sound)."""
        parts = [f"{file}: last row cut off mid-write" for file in self.torn]
        for what, cells in (
            ("done cells whose rows disagree with the manifest", self.damaged),
            ("unfinished cells with rows", self.unfinished),
        ):
            if cells:
                parts.append(f"{len(cells)} {what} (e.g. {min(cells)})")
        return "; ".join(self.problems[:1] + parts)


def read_table(text: str) -> tuple[list[list[str]], bool]:
    """A table's records (header first) and whether its last row was cut off mid-write."""
    torn = bool(text) and not text.endswith("\n")
    whole = text[: text.rfind("\n") + 1] if torn else text
    return list(csv.reader(io.StringIO(whole))), torn


def audit(folder: Path, manifest: Mapping[str, Any]) -> Audit:
    """Check every sweep table in `folder` against `manifest` (of a sound shape); reads only."""
    found = Audit()
    cells: Mapping[str, Mapping[str, Any]] = manifest["cells"]
    for file, columns in COLUMNS.items():
        path = folder / file
        try:
            text = path.read_bytes().decode() if path.exists() else None
        except UnicodeDecodeError as exc:
            found.problems.append(f"{path} is not UTF-8 text (byte {exc.start})")
            continue
        rows: dict[str, list[str]] = {}
        if text is not None:
            records, torn = read_table(text)
            if torn:
                found.torn.append(file)
            if not records or tuple(records[0]) != columns:
                found.problems.append(f"{path} has a header that is not the schema's {file}")
                continue
            for line, record in enumerate(records[1:], start=2):
                if len(record) != len(columns):
                    found.problems.append(
                        f"{path} line {line} has {len(record)} fields, not {len(columns)}"
                    )
                    break
                rows.setdefault(record[-1], []).append(row_text(record))
        unknown = sorted(set(rows) - set(cells))
        if unknown:
            found.problems.append(
                f"{path} holds rows of {len(unknown)} cells the manifest does not list "
                f"(e.g. {unknown[0]!r})"
            )
        for key, cell in cells.items():
            if cell["status"] != "done":
                found.unfinished |= {key} if key in rows else set()
            elif "rows" in cell:  # manifests written before row counts: not checked
                want = cell["rows"].get(file)
                if (want or None) != (tally(rows[key]) if key in rows else None):
                    found.damaged.add(key)
    return found
