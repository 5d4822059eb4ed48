"""Statistics of the comparison: mean and sample std over seeds, and the difference of two models
with its 95 % t interval and two-sided p-value.

:func:`compare_seeds` picks the test: :func:`paired_t` when both models finished the same seeds
(the difference is taken seed by seed), :func:`welch_t` otherwise. The t distribution is
``scipy.stats.t``.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Optional

from scipy import stats as _scipy_stats


@dataclass(frozen=True)
class TTest:
    """A difference of means (first minus second) with its 95 % interval and two-sided p-value.
    ``ci95`` and ``p_value`` are None when no interval is possible; ``note`` says why."""

    method: str  # "paired" | "welch" | "none"
    delta: Optional[float]
    ci95: Optional[tuple]
    p_value: Optional[float]
    df: Optional[float] = None
    t: Optional[float] = None
    note: str = ""


def t_quantile(q: float, df: float) -> float:
    """The t with P(T <= t) = q for Student's t with ``df`` degrees of freedom."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {q}")
    return float(_scipy_stats.t.ppf(q, df))


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    return float(2.0 * _scipy_stats.t.sf(abs(t), df))


def _interval(method: str, delta: float, se: float, df: float, scale: float) -> TTest:
    """The t interval, or none when the spread is zero up to rounding (relative to the data's ``scale``)."""
    if se <= 1e-12 * scale:
        return TTest(method, delta, None, None, df, None, "zero variance: no t-test possible")
    half = t_quantile(0.975, df) * se
    t = delta / se
    return TTest(method, delta, (delta - half, delta + half), t_two_sided_p(t, df), df, t)


def paired_t(a, b) -> TTest:
    """Paired t-test of a - b over matched samples (same seeds, same order)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    n = len(diffs)
    delta = statistics.fmean(diffs)
    if n < 2:
        return TTest("none", delta, None, None, note="one seed: no interval possible")
    scale = max(abs(v) for v in list(a) + list(b))
    return _interval("paired", delta, statistics.stdev(diffs) / math.sqrt(n), n - 1, scale)


def welch_t(a, b) -> TTest:
    """Welch's unequal-variance t-test of mean(a) - mean(b) (Welch-Satterthwaite degrees of freedom)."""
    na, nb = len(a), len(b)
    delta = statistics.fmean(a) - statistics.fmean(b)
    if na < 2 or nb < 2:
        return TTest("none", delta, None, None, note="one seed on a side: no interval possible")
    va, vb = statistics.variance(a) / na, statistics.variance(b) / nb
    se2 = va + vb
    df = se2 ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1)) if se2 > 0 else float(na + nb - 2)
    return _interval("welch", delta, math.sqrt(se2), df, max(abs(v) for v in list(a) + list(b)))


def compare_seeds(values: dict, baseline: dict) -> TTest:
    """``values`` vs ``baseline`` (each {seed: metric}): paired by seed when both hold the same
    seeds, Welch otherwise."""
    if not values or not baseline:
        return TTest("none", None, None, None, note="no finished runs to compare")
    if set(values) == set(baseline):
        seeds = sorted(values)
        return paired_t([values[s] for s in seeds], [baseline[s] for s in seeds])
    return welch_t(list(values.values()), list(baseline.values()))


def mean_std(values) -> tuple:
    """(mean, sample std with ddof = 1); std is None for fewer than two values, both for none."""
    values = list(values)
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


__all__ = ["TTest", "compare_seeds", "mean_std", "paired_t", "t_quantile", "t_two_sided_p", "welch_t"]
