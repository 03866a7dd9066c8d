"""Spread over seeds: every figure reported over several seeds uses these."""

from __future__ import annotations

import math

import numpy as np

CI_LEVEL = 0.95


def t_interval(values, level: float = CI_LEVEL) -> tuple[float, float]:
    """Two-sided Student-t confidence interval for the mean: mean ± t_{n−1} · s / √n.

    s is the sample std (ddof=1); (nan, nan) for fewer than two values. Seeds are few, so
    the t quantile (12.7 for n = 2, 2.78 for n = 5), not the normal 1.96.
    """
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    from scipy.stats import t

    mean = float(values.mean())
    half = float(t.ppf(0.5 + level / 2, n - 1)) * float(values.std(ddof=1)) / math.sqrt(n)
    return (mean - half, mean + half)
