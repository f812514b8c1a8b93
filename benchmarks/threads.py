"""The `--threads` flag every benchmark takes, written once."""

from __future__ import annotations

import argparse

import torch

from runners.device import use_available_cores


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    """Add `--threads N` (torch intra-op threads; default one per core)."""
    parser.add_argument(
        "--threads", type=int, help="torch intra-op threads (default: one per core)"
    )


def apply_threads(args: argparse.Namespace) -> int:
    """Set torch's intra-op threads from `args.threads` (or one per core); returns the count."""
    if args.threads:
        torch.set_num_threads(args.threads)
        return torch.get_num_threads()
    return use_available_cores()
