"""Every bad input is one line (at most three) on stderr and exit status 2, with nothing lost.

One table of cases, by category: command lines, damaged results folders, damaged data files, bad
presets, broken estimator modules. Each case builds its files under a fresh folder, runs the
command in this process (`main(argv)`), and checks: exit status 2, no traceback, at most three
lines on stderr, the expected words, and every file that existed before byte-identical after.
Interruptions (SIGINT, SIGTERM) need a real process and are tested at the end.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from estimators import registry
from reports.__main__ import main as reports_main
from runners.study import main as study_main
from runners.sweep import main as sweep_main
from tasks.data.files import CIFAR_FOLDER, CIFAR_TEST, CIFAR_TRAIN, IDX_FILES
from tests.preset_text import preset_text

ROOT = Path(__file__).resolve().parents[1]
MAINS: dict[str, Callable[[list[str] | None], int]] = {
    "sweep": sweep_main, "reports": reports_main, "study": study_main,
}  # fmt: skip
TINY = ["--tasks", "mlp-diabetes", "--estimators", "backprop", "--seeds", "1", "--steps", "5",
        "--seconds", "0", "--draws", "2", "--measure", "quality,train"]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """A bad input: `setup(dir)` writes its files (in `dir`, the working directory) and returns
    the command line; `words` must appear in the one line on stderr."""

    id: str
    command: str
    setup: Callable[[Path], list[str]]
    words: str


def sweep_args(*args: str) -> Callable[[Path], list[str]]:
    return lambda d: [*args, "--out", str(d / "out")]


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# Command lines ----------------------------------------------------------------------------------
COMMAND_LINES = [
    Case("non-integer seeds", "sweep", sweep_args("--seeds", "x"), "argument --seeds: invalid int"),
    Case("missing value", "sweep", lambda d: ["--seeds"], "--seeds: expected one argument"),
    Case("unknown flag", "sweep", sweep_args("--bogus"), "unrecognized arguments: --bogus"),
    Case("fractional steps", "sweep", sweep_args("--steps", "1.5"), "--steps: invalid int"),
    Case("text seconds", "sweep", sweep_args("--seconds", "abc"), "--seconds: invalid float"),
    Case("zero seeds", "sweep", sweep_args(*TINY[:4], "--seeds", "0"), "--seeds must be >= 1"),
    Case("one draw", "sweep", sweep_args(*TINY[:4], "--draws", "1"), "--draws must be >= 2"),
    Case("unknown measure", "sweep", sweep_args("--measure", "speed"), "unknown measurement"),
    Case("unknown task", "sweep", sweep_args("--tasks", "no-such-task"), "unknown task"),
    Case("bad task option", "sweep", sweep_args("--tasks", "mlp-diabetes:zz=1"), "zz"),
    Case("unknown estimator", "sweep", sweep_args("--estimators", "nope"), "module:Class"),
    Case("out of range", "sweep", sweep_args("--estimators", "fg-wperp:k=0"), "k"),
    Case("unknown parameter", "sweep", sweep_args("--estimators", "backprop:zz=1"), "'zz'"),
    Case("not key=value", "sweep", sweep_args("--estimators", "spsa:k"), "key=value"),
    Case("unknown preset", "sweep", sweep_args("--preset", "nope"), "unknown preset 'nope'"),
    Case("unknown device", "sweep", sweep_args(*TINY, "--device", "tpu"), "unknown device"),
    Case("resume with a selection", "sweep", sweep_args("--resume", "--seeds", "2"), "drop"),
    Case(
        "out under a file",
        "sweep",
        lambda d: [*TINY, "--out", str(_write(d / "f", "x") / "sub")],
        "is a file",
    ),
    Case("out read-only", "sweep", lambda d: [*TINY, "--out", "/proc/cheapgrad"], "cannot create"),
    Case(
        "out occupied",
        "sweep",
        lambda d: [*TINY, "--out", str(_write(d / "out" / "notes.txt", "mine").parent)],
        "already holds",
    ),
    Case("no data root", "sweep", sweep_args("--tasks", "mlp-mnist"), "needs --data-root"),
    Case(
        "missing data root",
        "sweep",
        lambda d: ["--tasks", "mlp-mnist", "--data-root", str(d / "nope"), "--out", str(d / "o")],
        "does not exist",
    ),
    Case("reports without --results", "reports", lambda d: [], "--results"),
    Case("reports unknown flag", "reports", lambda d: ["--results", str(d), "--x"], "--x"),
    Case(
        "reports out under a file",
        "reports",
        lambda d: ["--results", "@whole", "--out", str(_write(d / "f", "x") / "rep")],
        "cannot write the report",
    ),
    Case("unknown study", "study", lambda d: ["no-such-study", "--out", str(d / "o")], "no-such"),
    Case("study threads text", "study", lambda d: ["blog-table", "--threads", "x"], "--threads"),
    Case("study threads zero", "study", lambda d: ["blog-table", "--threads", "0"], ">= 1"),
    Case(
        "study smoke with options",
        "study",
        lambda d: ["lowrank-layer:batch=8", "--smoke", "--out", str(d / "o")],
        "drop the options",
    ),
    Case(
        "study out under a file",
        "study",
        lambda d: ["lowrank-layer", "--smoke", "--out", str(_write(d / "f", "x") / "o")],
        "is a file",
    ),
]


# Damaged results folders: a real tiny sweep (`@whole`), copied to `d/r` and damaged ---------------
def damaged(change: Callable[[Path], None], command: str = "resume") -> Callable[[Path], list]:
    def setup(d: Path) -> list[str]:
        folder = d / "r"
        shutil.copytree(WHOLE[0], folder)
        change(folder)
        if command == "resume":
            return ["--resume", "--out", str(folder), "--no-reports"]
        return ["--results", str(folder), "--out", str(d / "rep")]

    return setup


def manifest_edit(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        manifest = json.loads((folder / "manifest.json").read_text())
        edit(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))

    return change


def table_edit(file: str, edit: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        lines = (folder / file).read_text().splitlines(keepends=True)
        (folder / file).write_text("".join(edit(lines)))

    return change


def _set(mapping: dict, key: str, value: object) -> None:
    mapping[key] = value


def _first_cell(manifest: dict) -> dict:
    return manifest["cells"][next(iter(manifest["cells"]))]


NOT_JSON = lambda f: _write(f / "manifest.json", "{oops")  # noqa: E731
LATIN1 = lambda f: _write(f / "manifest.json", '{"config": "caf\xe9"}'.encode("latin-1"))  # noqa: E731
RESULTS = [
    Case(
        "resume missing folder",
        "sweep",
        lambda d: ["--resume", "--out", str(d / "no")],
        "nothing to resume",
    ),
    Case("resume not JSON", "sweep", damaged(NOT_JSON), "is corrupt"),
    Case("resume manifest latin-1", "sweep", damaged(LATIN1), "is corrupt"),
    Case(
        "resume manifest a list",
        "sweep",
        damaged(lambda f: _write(f / "manifest.json", "[1]")),
        "not an object",
    ),
    Case(
        "resume cells a list",
        "sweep",
        damaged(manifest_edit(lambda m: _set(m, "cells", []))),
        "'cells' is a list",
    ),
    Case(
        "resume cell without status",
        "sweep",
        damaged(manifest_edit(lambda m: _first_cell(m).pop("status"))),
        "has no status",
    ),
    Case(
        "resume seeds as text",
        "sweep",
        damaged(manifest_edit(lambda m: _set(m["config"], "seeds", "three"))),
        "corrupt",
    ),
    Case(
        "resume unknown config key",
        "sweep",
        damaged(manifest_edit(lambda m: _set(m["config"], "zz", 1))),
        "corrupt",
    ),
    Case(
        "resume import gone",
        "sweep",
        damaged(manifest_edit(lambda m: _set(m, "imports", {"gone-est": "gone_mod:Gone"}))),
        "cannot resume",
    ),
    Case(
        "resume table header",
        "sweep",
        damaged(table_edit("train.csv", lambda ls: ["a,b\n", *ls[1:]])),
        "header",
    ),
    Case(
        "resume short row mid-table",
        "sweep",
        damaged(table_edit("train.csv", lambda ls: [*ls[:2], "1,2\n", *ls[2:]])),
        "fields",
    ),
    Case(
        "resume rows of an unknown cell",
        "sweep",
        damaged(table_edit("train.csv", lambda ls: [*ls, ls[1].replace("seed=0", "seed=9")])),
        "does not list",
    ),
    Case(
        "resume table not UTF-8",
        "sweep",
        damaged(lambda f: _write(f / "train.csv", (f / "train.csv").read_bytes() + b"\xff\n")),
        "not UTF-8",
    ),
    Case("reports manifest not JSON", "reports", damaged(NOT_JSON, "reports"), "is corrupt"),
    Case("reports manifest latin-1", "reports", damaged(LATIN1, "reports"), "is corrupt"),
    Case(
        "reports config a list",
        "reports",
        damaged(manifest_edit(lambda m: _set(m, "config", [])), "reports"),
        "'config' is a list",
    ),
    Case(
        "reports cut-off table",
        "reports",
        damaged(table_edit("quality.csv", lambda ls: [*ls[:-1], ls[-1][:20]]), "reports"),
        "cut off",
    ),
    Case(
        "reports deleted row",
        "reports",
        damaged(table_edit("quality.csv", lambda ls: ls[:-1]), "reports"),
        "--allow-damaged",
    ),
    Case(
        "reports table not UTF-8",
        "reports",
        damaged(lambda f: _write(f / "train.csv", b"\xff\xfe"), "reports"),
        "corrupt",
    ),
    Case(
        "reports missing folder",
        "reports",
        lambda d: ["--results", str(d / "no")],
        "does not exist",
    ),
    Case(
        "reports a file", "reports", lambda d: ["--results", str(_write(d / "f", "x"))], "is a file"
    ),
]


# Damaged data files -------------------------------------------------------------------------------
def data(dataset: str, files: dict[str, bytes]) -> Callable[[Path], list[str]]:
    task = {"mnist": "mlp-mnist", "cifar": "mlp-cifar10"}[dataset]

    def setup(d: Path) -> list[str]:
        for name, content in files.items():
            _write(d / "data" / name, content)
        return ["--tasks", task, "--estimators", "backprop", "--data-root", str(d / "data"),
                "--out", str(d / "out")]  # fmt: skip

    return setup


def _offline() -> bool:
    try:
        socket.getaddrinfo("ossci-datasets.s3.amazonaws.com", 443)
    except OSError:
        return True
    return False


GARBAGE_IDX = {f"MNIST/raw/{f}": b"not an idx file\n" for f in IDX_FILES}
CIFAR = [*CIFAR_TRAIN, CIFAR_TEST]
DATA = [
    Case("MNIST not IDX", "sweep", data("mnist", GARBAGE_IDX), "not hold MNIST-format IDX"),
    Case("MNIST empty files", "sweep", data("mnist", dict.fromkeys(GARBAGE_IDX, b"")), "IDX"),
    Case("CIFAR not pickles", "sweep",
         data("cifar", {f"{CIFAR_FOLDER}/{f}": b"junk" for f in CIFAR}), "CIFAR-10 batch"),
    Case("CIFAR pickles of the wrong thing", "sweep",
         data("cifar", {f"{CIFAR_FOLDER}/{f}": pickle.dumps({"a": 1}) for f in CIFAR}),
         "CIFAR-10 batch"),
    Case("CIFAR rows of the wrong size", "sweep",
         data("cifar", {f"{CIFAR_FOLDER}/{f}": pickle.dumps({b"data": [[1, 2]], b"labels": [0]})
                        for f in CIFAR}), "CIFAR-10 batch"),
    pytest.param(
        Case("download without network", "sweep",
             lambda d: [*data("mnist", {})(d), "--download"], "could not download MNIST"),
        marks=pytest.mark.skipif(not _offline(), reason="the network is reachable"),
    ),
]  # fmt: skip


# Bad presets (a FILE.toml given to --preset) ----------------------------------------------------
GOOD_PRESET = preset_text()


def preset(text: str) -> Callable[[Path], list[str]]:
    return lambda d: ["--preset", str(_write(d / "p.toml", text)), "--out", str(d / "out")]


PRESETS = [
    Case("preset not TOML", "sweep", preset("seeds = = 3\n"), "not valid TOML"),
    Case(
        "preset missing key",
        "sweep",
        preset(GOOD_PRESET.replace("seeds = 1\n", "")),
        "lacks 'seeds'",
    ),
    Case(
        "preset seeds text",
        "sweep",
        preset(GOOD_PRESET.replace("seeds = 1", 'seeds = "x"')),
        "'seeds' must be an integer",
    ),
    Case(
        "preset tune not bool",
        "sweep",
        preset(GOOD_PRESET.replace("tune = false", "tune = 1")),
        "'tune' must be true or false",
    ),
    Case(
        "preset estimators a number",
        "sweep",
        preset(GOOD_PRESET.replace('["backprop"]', "3")),
        "'estimators' must be",
    ),
    Case(
        "preset steps table of text",
        "sweep",
        preset(GOOD_PRESET + '[steps]\nmlp-diabetes = "many"\n'),
        "'steps' must be",
    ),
    Case(
        "preset executor unknown",
        "sweep",
        preset(GOOD_PRESET + 'executor = "thread"\n'),
        "'executor' must be one of local, pool, slurm",
    ),
    Case(
        "preset jobs text",
        "sweep",
        preset(GOOD_PRESET + 'jobs = "two"\n'),
        "'jobs' must be an integer",
    ),
    Case(
        "preset slurm unknown key",
        "sweep",
        preset(GOOD_PRESET + "[slurm]\ngpu = 1\n"),
        "unknown key 'gpu' in [slurm]; valid: partition, gpus",
    ),
    Case(
        "preset slurm time text",
        "sweep",
        preset(GOOD_PRESET + '[slurm]\ntime = "4h"\n'),
        "[slurm] 'time' must be an integer (minutes)",
    ),
    Case(
        "preset slurm option not a list",
        "sweep",
        preset(GOOD_PRESET + '[slurm]\noption = "account=x"\n'),
        "[slurm] 'option' must be a list",
    ),
    Case(
        "preset seconds table of text",
        "sweep",
        preset(GOOD_PRESET + '[seconds]\nmlp-diabetes = "long"\n'),
        "'seconds' must be a number or a table of numbers by task",
    ),
    Case(
        "preset also table with an unknown key",
        "sweep",
        preset(
            GOOD_PRESET + '[[also]]\ntasks = ["mlp-diabetes"]\nestimators = ["backprop"]\n'
            'measure = ["train"]\nsteps = 2\n'
        ),
        "[[also]] table 1: unknown key 'steps'; valid: tasks, estimators, measure, grids, draws",
    ),
    Case(
        "preset also table without tasks",
        "sweep",
        preset(GOOD_PRESET + '[[also]]\nestimators = ["backprop"]\nmeasure = ["train"]\n'),
        "[[also]] table 1: 'tasks' must be a non-empty list of names",
    ),
    Case(
        "preset also table with one draw",
        "sweep",
        preset(
            GOOD_PRESET + '[[also]]\ntasks = ["mlp-diabetes"]\nestimators = ["backprop"]\n'
            'measure = ["quality"]\ndraws = 1\n'
        ),
        "[[also]] table 1: 'draws' must be an integer >= 2, got 1",
    ),
    Case(
        "preset also table with no seed",
        "sweep",
        preset(
            GOOD_PRESET + '[[also]]\ntasks = ["mlp-diabetes"]\nestimators = ["backprop"]\n'
            'measure = ["train"]\nseeds = 0\n'
        ),
        "[[also]] table 1: 'seeds' must be an integer >= 1, got 0",
    ),
    Case(
        "preset also table optional not bool",
        "sweep",
        preset(
            GOOD_PRESET + '[[also]]\ntasks = ["mlp-mnist"]\nestimators = ["backprop"]\n'
            'measure = ["train"]\noptional = "yes"\n'
        ),
        "[[also]] table 1: 'optional' must be true or false",
    ),
    Case(
        "preset also table naming no setting",
        "sweep",
        preset(
            GOOD_PRESET + '[[also]]\ntasks = ["mlp-diabetes"]\nestimators = []\n'
            'measure = ["quality"]\n'
        ),
        "[[also]] table 1: name its settings in 'estimators' or 'grids'",
    ),
    Case(
        "preset also table measuring scaling",
        "sweep",
        preset(
            GOOD_PRESET + '[[also]]\ntasks = ["mlp-diabetes"]\nestimators = ["backprop"]\n'
            'measure = ["scaling"]\n'
        ),
        "measurement 'scaling'; valid: train, quality, cost",
    ),
    Case(
        "preset also table naming an unknown task",
        "sweep",
        preset(
            GOOD_PRESET + '[[also]]\ntasks = ["mlp-nope"]\nestimators = ["backprop"]\n'
            'measure = ["train"]\n'
        ),
        "unknown task 'mlp-nope'",
    ),
    Case(
        "preset unknown study",
        "sweep",
        preset(GOOD_PRESET + 'studies = ["nope"]\n'),
        "unknown study 'nope'",
    ),
    Case(
        "preset study with a bad option",
        "sweep",
        preset(GOOD_PRESET + 'studies = ["wperp-overlap:widths=many"]\n'),
        "wperp-overlap",
    ),
    Case(
        "preset file missing",
        "sweep",
        lambda d: ["--preset", str(d / "no.toml")],
        "cannot read preset file",
    ),
    Case(
        "preset not UTF-8",
        "sweep",
        lambda d: ["--preset", str(_write(d / "p.toml", b"\xff"))],
        "cannot read preset file",
    ),
]


# Broken estimator modules (in the working directory, named by `module:Class`) -------------------
HEADER = "import torch\nfrom estimators import Estimate, GradientEstimator\n\n"
BODY = """
    def estimate(self, batch, generator):
        return Estimate(grads={}, loss=torch.tensor(0.0))
"""


def module(name: str, source: str, attr: str = "Est") -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        _write(d / f"{name}.py", source)
        return [*TINY[:2], "--estimators", f"{name}:{attr}", "--out", str(d / "out")]

    return setup


def est_class(name: str, lines: str, body: str = BODY) -> str:
    return f"{HEADER}class Est(GradientEstimator):\n    {lines}\n{body}"


MODULES = [
    Case("module missing", "sweep",
         lambda d: [*TINY[:2], "--estimators", "cg_no_such_mod:Est", "--out", str(d / "o")],
         "not found"),
    Case("module raises", "sweep", module("cg_bad_raises", "raise RuntimeError('boom')\n"),
         "RuntimeError: boom"),
    Case("module syntax error", "sweep", module("cg_bad_syntax", "def (:\n"), "SyntaxError"),
    Case("module name error", "sweep", module("cg_bad_nameerr", "undefined_thing\n"),
         "NameError"),
    Case("class missing", "sweep", module("cg_bad_noclass", HEADER, "Est"), "has no 'Est'"),
    Case("not a class", "sweep", module("cg_bad_notclass", "Est = 3\n"), "it is a int"),
    Case("not an estimator", "sweep", module("cg_bad_plain", "class Est:\n    pass\n"),
         "not a GradientEstimator subclass"),
    Case("no name", "sweep", module("cg_bad_noname", est_class("", "unbiased = False")),
         "declares no `name`"),
    Case("unbiased not declared", "sweep",
         module("cg_bad_nounb", est_class("", "name = 'cg-nounb'")), "Est.unbiased"),
    Case("unbiased text", "sweep",
         module("cg_bad_unbtext", est_class("", "name = 'cg-unbtext'; unbiased = 'yes'")),
         "Est.unbiased"),
    Case("name invalid", "sweep",
         module("cg_bad_name", est_class("", "name = 'Bad Name'; unbiased = False")),
         "Est.name = 'Bad Name' is invalid"),
    Case("name taken", "sweep",
         module("cg_bad_taken", est_class("", "name = 'backprop'; unbiased = False")),
         "already registered"),
    Case("estimate missing", "sweep",
         module("cg_bad_abstract", est_class("", "name = 'cg-abstract'; unbiased = False", "")),
         "does not implement estimate"),
    Case("params not Params", "sweep",
         module("cg_bad_params", est_class("", "name = 'cg-p'; unbiased = False; params = (1,)")),
         "Est.params must be"),
]  # fmt: skip

CASES = [*COMMAND_LINES, *RESULTS, *DATA, *PRESETS, *MODULES]
WHOLE: list[Path] = []  # the tiny sweep the damaged-folder cases copy


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "r"
    assert sweep_main([*TINY, "--out", str(out), "--no-reports"]) == 0
    WHOLE[:] = [out]
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _case_id(case: object) -> str:
    inner = case.values[0] if hasattr(case, "values") else case
    return inner.id  # type: ignore[attr-defined]


def test_at_least_forty_distinct_bad_inputs() -> None:
    ids = [_case_id(c) for c in CASES]
    assert len(set(ids)) == len(ids) >= 40


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bad_input_is_one_line_and_exit_2(
    case: Case, whole: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader may add the working directory
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    argv = [str(whole) if a == "@whole" else a for a in case.setup(tmp_path)]
    before = snapshot(tmp_path)
    whole_before = snapshot(whole)
    status = MAINS[case.command](argv)
    out, err = capsys.readouterr()
    assert status == 2, err
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 3 and lines[0].startswith("error: "), err
    assert case.words in err, err
    assert snapshot(tmp_path) == before
    assert snapshot(whole) == whole_before


def test_an_unexpected_error_is_one_line_without_debug_and_a_traceback_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A bug (here: the listing raising) is exit status 1, its traceback only under --debug."""

    def broken() -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr("runners.sweep.listing", broken)
    assert sweep_main(["--list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: a bug" in err and "--debug" in err
    assert sweep_main(["--list", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


# Interruptions ----------------------------------------------------------------------------------
README_EXAMPLE = (ROOT / "README.md").read_text().split("```python\n")[1].split("```")[0]


def _signal_once_a_cell_is_done(folder: Path, signum: int) -> threading.Thread:
    """A thread that sends `signum` to this process once the sweep in `folder` has finished a
    cell and still has pending ones."""

    def watch() -> None:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            try:
                statuses = [c["status"] for c in _cells(folder).values()]
            except (OSError, ValueError, KeyError):
                statuses = []
            if "done" in statuses and "pending" in statuses:
                os.kill(os.getpid(), signum)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _cells(folder: Path) -> dict[str, dict]:
    return json.loads((folder / "manifest.json").read_text())["cells"]


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_sweep_with_an_outside_estimator_keeps_its_cells_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, signum: int, status: int
) -> None:
    """The README's estimator saved as mypkg/signed.py and named as the README says; the sweep,
    sent the signal once a cell is done, exits 130 / 143 with one line naming the --resume
    command, which, run in a new process (the estimator imported again from the manifest's
    import path), finishes it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    for name in ("mypkg", "mypkg.signed"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    _write(tmp_path / "mypkg" / "signed.py", README_EXAMPLE)
    argv = [*TINY[:2], "--estimators", "backprop", "mypkg.signed:SignedBackprop:scale=0.5",
            "--seeds", "2", "--steps", "100", "--measure", "train", "--out", "r",
            "--no-reports"]  # fmt: skip
    watcher = _signal_once_a_cell_is_done(tmp_path / "r", signum)
    assert sweep_main(argv) == status
    watcher.join()
    err = capsys.readouterr().err
    *_, said, last = err.strip().splitlines()  # two lines, each within 100 columns
    assert "Traceback" not in err and max(len(said), len(last)) <= 100
    assert said.startswith("interrupted") and said.endswith("finished cells are kept in r")
    assert last == "finish with: python -m runners.sweep --resume --out r"
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["imports"] == {"signed-backprop": "mypkg.signed:SignedBackprop"}
    assert {c["status"] for c in manifest["cells"].values()} == {"done", "pending"}
    resume = [sys.executable, *last.split("finish with: python ")[1].split(), "--no-reports"]
    done = subprocess.run(resume, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    cells = _cells(tmp_path / "r")
    assert len(cells) == 4 and {c["status"] for c in cells.values()} == {"done"}
