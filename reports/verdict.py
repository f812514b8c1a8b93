"""From numbers with 95% intervals to a claim's verdict and its sentence, with no file reading.

A claim is tested on each task that has the rows it needs: a `Check` says whether the interval
decides for the claim (True), against it (False) or not at all (None, the interval straddles the
claim's bound). The claim's `Verdict` is "holds" when every check decides for it, "holds only on"
the tasks that do when some do, "does not hold" when none does, and "not measurable from these
results" with the command that writes the missing rows when there is no check at all, or
when no check's interval decides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reports.style import fmt, half_width

HOLDS, FAILS, ONLY, ABSENT = (
    "holds",
    "does not hold",
    "holds only",
    "not measurable from these results",
)


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% interval [lo, hi] and what the interval is over ("3 seeds")."""

    value: float
    lo: float
    hi: float
    basis: str

    def text(self) -> str:
        """ "0.93 [0.91, 0.95] (3 seeds)"; an undefined end (one sample) shows as "-"."""
        return f"{fmt(self.value)} [{fmt(self.lo)}, {fmt(self.hi)}] ({self.basis})"


def mean_interval(values: Sequence[float]) -> Estimate:
    """Mean of `values` and its 95% Student-t interval (NaN ends for fewer than two values)."""
    array = np.asarray(values, dtype=float)
    mean = float(array.mean()) if len(array) else math.nan
    half = half_width(array)
    return Estimate(mean, mean - half, mean + half, seeds(len(array)))


def accuracy_difference(diffs: Sequence[float], n_val: int | None) -> Estimate:
    """Mean of per-seed differences of two accuracies on one validation set of `n_val` examples,
    with a 95% interval that counts both noises: the Student-t half-width over the seeds and,
    added in quadrature, the validation set's sampling error at its smallest (the set is the
    same for every seed, so averaging seeds does not shrink it). A difference d means at least
    |d| n_val examples classified differently; with that fewest, McNemar's standard error of d
    is sqrt((|d| - d²) / n_val), taken ×1.96. Without `n_val`, the seeds' interval alone."""
    est = mean_interval(diffs)
    if n_val is None or not math.isfinite(est.value):
        return est
    d = min(abs(est.value), 1.0)
    sampling = 1.96 * math.sqrt((d - d * d) / n_val)
    half = math.hypot(est.value - est.lo, sampling)
    return Estimate(est.value, est.value - half, est.value + half,
                    f"{est.basis}, {n_val} validation examples")  # fmt: skip


def seeds(n: int) -> str:
    """ "1 seed", "3 seeds"."""
    return f"{n} seed" if n == 1 else f"{n} seeds"


def exceeds(est: Estimate, bound: float) -> bool | None:
    """Whether `est` is above `bound`: True when its interval is wholly above, False when
    wholly at or below, None when the interval contains it or is undefined."""
    if est.lo > bound:
        return True
    if est.hi <= bound:
        return False
    return None


def below(est: Estimate, bound: float) -> bool | None:
    """Whether `est` is below `bound`: True when its interval is wholly below, False when
    wholly at or above, None when the interval contains it or is undefined."""
    if est.hi < bound:
        return True
    if est.lo >= bound:
        return False
    return None


def within(est: Estimate, tolerance: float) -> bool | None:
    """Whether `est` is within ±`tolerance` of 0: True when its interval lies wholly inside
    (-tolerance, tolerance), False when wholly beyond one end, None when it straddles an end or
    is undefined."""
    if -tolerance < est.lo and est.hi < tolerance:
        return True
    if est.hi <= -tolerance or est.lo >= tolerance:
        return False
    return None


def beats(a: Estimate, b: Estimate) -> bool | None:
    """Whether a is higher than b: True when a's interval is wholly above b's, False when
    wholly at or below it, None when the two overlap or one is undefined."""
    if a.lo > b.hi:
        return True
    if a.hi <= b.lo:
        return False
    return None


@dataclass(frozen=True)
class Check:
    """One task's test of a claim: where, the outcome, and the numbers as a clause."""

    where: str
    passed: bool | None
    numbers: str


@dataclass(frozen=True)
class Claim:
    """What a source states, how it is measured here, and the command that measures it."""

    name: str
    source: str
    statement: str
    measurement: str
    command: str


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict word(s) and the sentence that states it with its numbers."""

    word: str
    sentence: str


def all_of(outcomes: Sequence[bool | None]) -> bool | None:
    """Outcome of a check that needs every part: False when a part is against, None when none
    is against but one is undecided, True when every part is for."""
    if False in outcomes:
        return False
    return None if None in outcomes else True


def any_of(outcomes: Sequence[bool | None]) -> bool | None:
    """Outcome of a check that needs one part: True when a part is for, False when every part
    is against, None otherwise."""
    if True in outcomes:
        return True
    return False if all(o is False for o in outcomes) else None


def outcome(passed: bool | None) -> str:
    """ "for", "against" or "undecided", as a check's clause ends."""
    return {True: "for", False: "against", None: "undecided"}[passed]


def verdict(
    claim: Claim, checks: Sequence[Check], why: str = "the results hold none of the rows it needs"
) -> Verdict:
    """The claim's verdict over its checks, and one sentence: claim, source, measurement,
    each task's numbers and outcome, verdict; with no check, `why` and the command to run."""
    head = f"{claim.name}. {claim.statement} ({claim.source}). Measured: {claim.measurement}."
    if not checks:
        return Verdict(ABSENT, f"{head} Verdict: {ABSENT}: {why} (run `{claim.command}`).")
    evidence = "; ".join(f"{c.where}: {c.numbers} ({outcome(c.passed)})" for c in checks)
    undecided = [c.where for c in checks if c.passed is None]
    if len(undecided) == len(checks):
        return Verdict(
            ABSENT,
            f"{head} {evidence}. Verdict: {ABSENT}: no 95% interval decides it (run "
            f"`{claim.command}` with a larger `--seeds`, on a machine running no other work).",
        )
    held = [c.where for c in checks if c.passed]
    if len(held) == len(checks):
        word = HOLDS
    elif held:
        word = f"{ONLY} on {', '.join(held)}"
    else:
        word = FAILS
    note = f" On {', '.join(undecided)} the 95% interval does not decide." if undecided else ""
    return Verdict(word, f"{head} {evidence}. Verdict: {word}.{note}")
