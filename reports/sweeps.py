"""Rows of a results table that form a sweep over one estimator parameter or task option
(`k=` in params, `width=` in a task name such as `mlp-mnist1d:width=512`)."""

from __future__ import annotations

import pandas as pd

from reports.load import number
from tasks.spec import format_options, parse_options, split_spec


def split_task(task: str) -> tuple[str, dict[str, str]]:
    """`mlp-mnist1d:width=512` -> ("mlp-mnist1d", {"width": "512"})."""
    base, options = split_spec(task)
    return base, parse_options(options)


def _task_name(base: str, options: dict[str, str]) -> str:
    return f"{base}:{format_options(options)}" if options else base


def along_param(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Rows whose `params` set `name`, with a numeric column `name` and `rest` (the other
    parameters); only groups (task, estimator, rest) holding at least two values of `name`."""
    parsed = df["params"].map(parse_options)
    rows = df[parsed.map(lambda p: name in p)].copy()
    if rows.empty:
        return rows.assign(**{name: [], "rest": []})
    parsed = parsed[rows.index]
    rows[name] = parsed.map(lambda p: number(p[name]))
    rows["rest"] = parsed.map(lambda p: format_options({k: v for k, v in p.items() if k != name}))
    values = rows.groupby(["task", "estimator", "rest"])[name].transform("nunique")
    return rows[values >= 2]


def along_option(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Rows whose task name carries the model option `name`, with a numeric column `name` and
    `base` (the task without that option); only bases holding at least two values of it."""
    split = df["task"].map(split_task)
    rows = df[split.map(lambda s: name in s[1])].copy()
    if rows.empty:
        return rows.assign(**{name: [], "base": []})
    split = split[rows.index]
    rows[name] = split.map(lambda s: number(s[1][name]))
    rows["base"] = split.map(
        lambda s: _task_name(s[0], {k: v for k, v in s[1].items() if k != name})
    )
    values = rows.groupby("base")[name].transform("nunique")
    return rows[values >= 2]
