"""The house's one-way import rule (README, "Architecture"), checked on the source.

tasks <- estimators <- measurements <- runners: a folder imports only folders below it. The
reports read results folders and import, of the project, only the results schema
(`measurements.schema`), the spec grammar it uses (`tasks.spec`) and the commands' error
boundary (`tasks.boundary`). Every import statement
counts, including ones inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("tasks", "estimators", "measurements", "runners")
REPORTS_MAY_IMPORT = {"measurements.schema", "tasks.spec", "tasks.boundary", "tasks.labels"}
PROJECT = {*ORDER, "reports", "benchmarks"}


def _imports(path: Path) -> set[str]:
    """Modules of this project that `path` imports (dotted names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in PROJECT:  # `from reports import tables` imports reports.tables
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
    return {name for name in found if name.split(".")[0] in PROJECT}


def _arrows_up(folder: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for name in sorted(_imports(path)):
            top = name.split(".")[0]
            if folder == "reports":
                allowed = top == "reports" or name in REPORTS_MAY_IMPORT
            else:
                allowed = top in ORDER[: ORDER.index(folder) + 1]
            if not allowed:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return bad


@pytest.mark.parametrize("folder", [*ORDER, "reports"])
def test_no_folder_imports_one_above_it(folder: str) -> None:
    assert _arrows_up(folder) == []


def test_the_checker_sees_an_arrow_up(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from runners.sweep import main\n    import reports.build\n")
    assert _imports(module) == {"runners.sweep", "reports.build"}
