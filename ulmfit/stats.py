"""Aggregation over seeds: means with Student-t confidence intervals, and paired differences
(a variant minus the reference on the same seed, hence the same labelled examples)."""

import math

import numpy as np
from scipy import stats


def mean_ci(values, level=0.95):
    """(mean, half-width of the `level` confidence interval, n); the half-width is nan for n < 2."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(x[0]), math.nan, 1
    half = stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return float(x.mean()), float(half), n


def paired_diff(values, reference, level=0.95):
    """mean_ci of values[seed] - reference[seed] over the seeds both have."""
    seeds = sorted(set(values) & set(reference))
    return mean_ci([values[s] - reference[s] for s in seeds], level)


def fmt(mean, half, scale=100.0, digits=2, signed=False):
    """'12.34 ± 0.56' (percent by default); '12.34' when there is no interval."""
    if mean is None or math.isnan(mean):
        return "–"
    sign = "+" if signed else ""
    text = f"{mean * scale:{sign}.{digits}f}"
    return text if half is None or math.isnan(half) else f"{text} ± {half * scale:.{digits}f}"
