"""The error boundary of every command (`runners.sweep`, `runners.study`, `reports`).

What a user can get wrong (a flag, a name, a file) ends as one line on stderr and exit status 2;
an interruption (Ctrl-C, SIGTERM) as one line and 130 / 143; anything else is a bug: one line
and exit status 1, with the traceback under `--debug`. It lives at the bottom layer because the
reports, which import nothing of the sweep, use it too.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

USAGE_STATUS = 2  # bad input: a flag, a name, a file


class UsageError(ValueError):
    """A command line argparse refuses, as one line naming the flag and what it wants."""


class Interrupted(BaseException):  # like KeyboardInterrupt: not an Exception
    """SIGINT or SIGTERM arrived; `note` says what was kept and how to go on."""

    def __init__(self, signum: int, note: str = "") -> None:
        super().__init__(signum, note)
        self.signum = signum
        self.note = note

    @property
    def status(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are a `UsageError` (one line) instead of a usage dump,
    with a `--debug` flag that shows the traceback of an unexpected error."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.add_argument(
            "--debug", action="store_true", help="show the traceback of an unexpected error"
        )

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; see {self.prog} --help")


def first_line(exc: BaseException) -> str:
    """`exc`'s message, first line only (the type's name when it has none)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@contextmanager
def _signals_raise() -> Iterator[None]:
    """While inside: SIGINT and SIGTERM raise `Interrupted` (main thread only), then restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_command(
    parser: Parser,
    body: Callable[[argparse.Namespace], int],
    anticipated: tuple[type[Exception], ...],
    argv: list[str] | None,
) -> int:
    """Parse `argv` and run `body(args)` inside the boundary; returns the exit status.

    `anticipated` are the errors a user causes: their message (at most three lines, the first
    naming the problem) goes to stderr with "error: " and the status is 2."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        with _signals_raise():
            return body(parser.parse_args(argv))
    except SystemExit as exc:  # --help: argparse prints and exits 0
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_STATUS
    except anticipated as exc:
        lines = str(exc).strip().splitlines()[:3] or [type(exc).__name__]
        print("error: " + "\n".join(lines), file=sys.stderr)
        return USAGE_STATUS
    except Interrupted as exc:
        name = signal.Signals(exc.signum).name
        print(f"interrupted ({name}){': ' + exc.note if exc.note else ''}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("interrupted (SIGINT)", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as exc:
        if debug:
            traceback.print_exc()
        else:
            print(
                f"internal error: {type(exc).__name__}: {first_line(exc)} "
                "(a bug: run again with --debug for the traceback and report it)",
                file=sys.stderr,
            )
        return 1
