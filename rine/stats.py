"""Spread over seeds: every figure reported over several seeds uses these.

One convention everywhere (the API's Estimate, the tables, the plots' console lines):
mean ± sample std (ddof=1) with n, and the two-sided Student-t interval of the mean; a
single seed shows its value and "(n=1)", never "± nan".
"""

from __future__ import annotations

import math

import numpy as np

CI_LEVEL = 0.95


def _finite(values) -> np.ndarray:
    values = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    return values[~np.isnan(values)]


def t_interval(values, level: float = CI_LEVEL) -> tuple[float, float]:
    """Two-sided Student-t confidence interval for the mean: mean ± t_{n−1} · s / √n.

    s is the sample std (ddof=1); (nan, nan) for fewer than two values. Seeds are few, so
    the t quantile (12.7 for n = 2, 2.78 for n = 5), not the normal 1.96.
    """
    values = _finite(values)
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    from scipy.stats import t

    mean = float(values.mean())
    half = float(t.ppf(0.5 + level / 2, n - 1)) * float(values.std(ddof=1)) / math.sqrt(n)
    return (mean - half, mean + half)


def mean_std(values) -> tuple[float, float, int]:
    """(mean, sample std, n) of the non-NaN values; the std is NaN for n < 2, both for n = 0."""
    values = _finite(values)
    n = len(values)
    std = float(values.std(ddof=1)) if n > 1 else math.nan
    return (float(values.mean()) if n else math.nan), std, n


def format_ci(values, digits: int = 3, level: float = CI_LEVEL) -> str:
    """'95% CI [0.968, 0.978]' (t_interval); '–' for fewer than two values."""
    low, high = t_interval(values, level)
    if math.isnan(low):
        return "–"
    return f"{level:.0%} CI [{low:.{digits}f}, {high:.{digits}f}]"


def format_mean_std(values, digits: int = 3, unit: str = "", ci: bool = True, level: float = CI_LEVEL,
                    show_n: bool = True) -> str:
    """'0.973 ± 0.004 bits (n=5), 95% CI [0.968, 0.978]' of the non-NaN values.

    unit: written after the numbers ('bits' or '' for none); ci=False leaves the interval
    out; show_n=False leaves '(n=...)' out, for a table that gives n on a row of its own.
    A single value shows '0.973 (n=1)' (no spread); none shows '–'.
    """
    mean, std, n = mean_std(values)
    unit = f" {unit}" if unit else ""
    count = f" (n={n})" if show_n else ""
    if n == 0:
        return "–"
    if n == 1:
        return f"{mean:.{digits}f}{unit}{count}"
    text = f"{mean:.{digits}f} ± {std:.{digits}f}{unit}{count}"
    return f"{text}, {format_ci(values, digits, level)}" if ci else text
