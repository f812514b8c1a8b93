"""`index.md`: what was run, the estimator settings, and every section's findings and files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tabulate import tabulate

from measurements.schema import ADDED_IN_2
from reports.load import Results
from reports.section import Section
from reports.style import Style
from tasks.labels import short_labels
from tasks.spec import split_spec

ERROR_CHARS = 200
# What a file written before protocol 2 lacks beyond its columns, said where it loads.
LEGACY = {
    "quality.csv": "its work MSE is not scale-invariant and has no interval, and no relative "
    "bias is tested, so no setting is called more or less informative per FLOP or biased",
    "cost.csv": "its FLOPs count no linear algebra and its time ratios have neither an interval "
    "nor an A/A control",
}


def _run(res: Results) -> list[str]:
    m = res.manifest
    config, env = m.get("config", {}), m.get("environment", {})
    cells = m.get("cells", {})
    status = [c.get("status", "?") for c in cells.values()]
    lines = [
        "## The run",
        "",
        "From `manifest.json`:",
        "",
        f"- preset `{config.get('preset')}`; tasks: {', '.join(config.get('tasks', []))}; "
        f"seeds: {config.get('seeds')}; measurements: {', '.join(config.get('measure', []))}; "
        f"draws per checkpoint: {config.get('draws')}; step budget override: "
        f"{config.get('steps') or 'none (each task its own)'}; rate tuning: "
        f"{'yes' if config.get('tune') else 'no'}.",
        *(_group(g) for g in config.get("also", [])),
        *([f"- studies: {', '.join(config['studies'])}."] if config.get("studies") else []),
        f"- device: {env.get('device_name', env.get('device', '?'))}; "
        f"torch {env.get('torch', '?')}; started {m.get('started', '?')}, "
        f"finished {m.get('finished') or 'not finished'}.",
        f"- cells: {status.count('done')} done, {status.count('failed')} failed, "
        f"{len(status) - status.count('done') - status.count('failed')} not run.",
    ]
    for file in sorted(res.legacy):
        lines.append(f"- {file} was written before protocol 2: its columns "
                     f"{', '.join(ADDED_IN_2[file])} are absent (shown as -); "
                     f"{LEGACY.get(file, 'its numbers keep their old meaning')}.")  # fmt: skip
    for key, cell in cells.items():
        if cell.get("status") == "failed":
            error = " ".join(str(cell.get("error", "")).split())[:ERROR_CHARS]
            lines.append(f"  - failed: `{key}`: {error}")
    tasks = m.get("tasks", {})
    if tasks:
        rows = [[t, info.get("target_acc"), info.get("steps"), info.get("batch_size"),
                 info.get("lr"), info.get("n_params")] for t, info in tasks.items()]  # fmt: skip
        lines += ["", tabulate(rows, headers=["task", "target acc", "steps", "batch size",
                                              "lr", "params"], tablefmt="pipe")]  # fmt: skip
    chosen = m.get("chosen_lr") or {}
    if chosen:
        lines += [
            "",
            "Rates chosen by tuning: "
            + "; ".join(f"{k.replace('|', ' / ')}: {v}" for k, v in chosen.items())
            + ".",
        ]
    return lines


def _group(group: dict[str, Any]) -> str:
    """One `[[also]]` group of the configuration as a line of "The run"."""
    specs = [split_spec(e) for e in group.get("estimators", [])]
    labels = short_labels(specs)
    draws = group.get("draws")
    return (f"- also (an `[[also]]` group): {', '.join(group.get('tasks', []))} × "
            f"{', '.join(labels[s] for s in specs)}: {', '.join(group.get('measure', []))}"
            f"{'' if draws is None else f' ({draws} draws per checkpoint)'}.")  # fmt: skip


def _settings(style: Style) -> list[str]:
    rows = [[label, est, params] for (est, params), label in style.labels.items()]
    return ["## Estimator settings", "",
            "Labels in the tables and figures show only the parameters that differ between the "
            "settings of one estimator; the full parameter strings (`params` in every CSV):", "",
            tabulate(rows, headers=["label", "estimator", "params"], tablefmt="pipe")]  # fmt: skip


def _links(files: list[str], sep: str) -> str:
    return sep.join(f"[{Path(f).name}]({f})" for f in files)


def _section(s: Section) -> list[str]:
    lines = [f"### {s.title}", "", f"*{s.question}*", "", f"Source: {s.source}", ""]
    if s.skipped is not None:
        return [*lines, f"**Skipped:** {s.skipped}.", ""]
    lines += [f"- {f}" for f in s.findings]
    lines += ["", f"Files: {_links(s.files, ' · ')}", ""] if s.files else [""]
    lines += [f"![{s.title}]({f})" for f in s.files if f.endswith(".png")]
    if s.body:
        lines += ["", s.body]
    return [*lines, ""]


def render(res: Results, style: Style, sections: list[Section]) -> str:
    """The whole `index.md`."""
    drawn = [s for s in sections if s.skipped is None]
    skipped = [s for s in sections if s.skipped is not None]
    lines = [
        f"# Report: {res.folder.resolve().name}",
        "",
        *(line for s in sections if s.lead for line in (s.lead, "")),  # the sections' leads
        f"Built by `python -m reports --results {res.folder}` from the tidy files of that results "
        "folder and its `manifest.json` only; nothing was re-run. Each table and figure below "
        "names the file and the filter its numbers come from (docs/protocol.md defines them).",
        "",
        *_run(res),
        "",
        *_settings(style),
        "",
        "## Contents",
        "",
        *(f"- {s.title}: {_links(s.files, ', ') or 'findings only'}" for s in drawn),
        *(f"- {s.title}: skipped ({s.skipped})" for s in skipped),
        "",
        "## Findings",
        "",
    ]
    for s in sections:
        lines += _section(s)
    return "\n".join(lines).rstrip() + "\n"
