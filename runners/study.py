"""Run one study and write its rows into a results folder (see `measurements.study`).

    python -m runners.study --list
    python -m runners.study lowrank-layer --out results/studies
    python -m runners.study lowrank-layer:batch=256,repeats=20 --out results/studies
    python -m runners.study lowrank-layer --smoke --out /tmp/smoke     # two steps, tiny sizes

The folder is created when missing; a sweep's results folder may be given, and the study's
tables are then written beside the sweep's (the manifest records each study's settings under
`studies`). A study run again replaces its own tables. `python -m reports --results DIR` draws
them. Bad input prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate

from measurements import store
from measurements.device import DeviceError, describe, resolve_device, use_available_cores
from measurements.schema import MANIFEST
from measurements.studies import MODULES, get_study
from measurements.study import StudyError, study_name
from tasks.boundary import Parser, run_command


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _manifest(out: Path) -> dict[str, Any]:
    """The folder's manifest (a new one for a new or empty folder)."""
    if out.exists() and not out.is_dir():
        raise store.ResultsError(f"{out} is a file, not a results folder; choose another --out")
    if (out / MANIFEST).exists():
        return store.open_existing(out)[0]
    if out.exists() and any(out.iterdir()):
        raise store.ResultsError(f"{out} holds files that are not a results folder's")
    store.check_creatable(out)
    return {"config": {"tasks": []}, "cells": {}}


def run(spec: str, out: Path, device: torch.device, smoke: bool) -> dict[str, int]:
    """Run the study `spec` and write its rows to `out`; returns rows written per file."""
    name, options = study_name(spec)
    study = get_study(name)
    if smoke and options:
        raise StudyError("--smoke runs the study's own tiny settings; drop the options")
    settings = study.smoke if smoke else study.configure(options)
    manifest = _manifest(out)
    started = _now()
    rows = study.measure(settings, device)
    out.mkdir(parents=True, exist_ok=True)
    for file in study.files:
        store.append_rows(out, file, rows.get(file, []), replace=True)
    manifest.setdefault("studies", {})[name] = {
        "spec": study.describe(settings), "smoke": smoke, "device": describe(device),
        "torch": torch.__version__, "started": started, "finished": _now(),
    }  # fmt: skip
    store.write_manifest(out, manifest)
    for file in study.files:
        print(f"\n{file}\n{tabulate(rows.get(file, []), headers='keys', floatfmt='.3g')}")
    return {file: len(rows.get(file, [])) for file in study.files}


def parser() -> Parser:
    """The command line (`--debug` included; errors are one line)."""
    parser = Parser(prog="python -m runners.study", description=__doc__)
    parser.add_argument("study", nargs="?", help="NAME or NAME:key=value,... (see --list)")
    parser.add_argument("--list", action="store_true", help="list the studies and exit")
    parser.add_argument("--out", type=Path, default=Path("results") / "studies")
    parser.add_argument("--smoke", action="store_true", help="the study's tiny settings")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: all cores)")
    return parser


def study(args: argparse.Namespace) -> int:
    if args.list or not args.study:
        for name in sorted(MODULES):
            print(f"{name:22} {get_study(name).summary}")
        return 0
    if args.threads is not None and args.threads < 1:
        raise StudyError(f"--threads must be >= 1, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        use_available_cores()
    counts = run(args.study, args.out, resolve_device(args.device), args.smoke)
    print(f"\nresults: {args.out} ({', '.join(f'{f}: {n} rows' for f, n in counts.items())})")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(parser(), study, (StudyError, DeviceError, store.ResultsError), argv)


if __name__ == "__main__":
    sys.exit(main())
