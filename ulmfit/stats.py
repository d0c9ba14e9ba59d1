"""Aggregation over seeds: means with Student-t confidence intervals, paired differences (a variant minus
the reference on the same seed, hence the same labelled examples), and a fitted trend with the point at
which it reaches a baseline."""

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


def fieller(slope, d, s2, sxx, w, t):
    """The set of u where (d + slope u)^2 <= t^2 (w + s2 u^2 / sxx), as (low, high); None at an unbounded end."""
    a, b, c = slope**2 - t**2 * s2 / sxx, 2 * slope * d, d**2 - t**2 * w
    disc = b**2 - 4 * a * c
    if a <= 0 and disc <= 0:
        return None, None  # every u: no information on the crossing
    r1, r2 = sorted(((-b - math.sqrt(max(disc, 0.0))) / (2 * a), (-b + math.sqrt(max(disc, 0.0))) / (2 * a)))
    if a > 0:
        return r1, r2
    return (r2, None) if -d / slope >= r2 else (None, r1)  # two rays: the one that holds the estimate


def trend(x, y, target, sign=-1, level=0.95):
    """Least-squares line of y on x over the individual points (one a seed; x taken as exact), and the x at which
    it reaches the mean of `target` (a sequence of values, one a seed: a baseline's errors).

    Returns a dict: n, slope and intercept with their `level` Student-t intervals (n - 2 degrees of freedom), and
    crossing with crossing_ci. The crossing is None without a target, or when the slope's interval includes 0 or
    has not the expected `sign` (-1: y falls as x grows). Its interval is Fieller's: every x0 at which the fitted
    line minus the target's mean is within t standard errors of 0, the standard error combining the line's
    (residual variance, n - 2 degrees of freedom) and the target mean's (its seeds' variance over their number,
    m - 1 degrees of freedom; none for a single value), t with Welch-Satterthwaite's degrees of freedom at the
    estimate. It is exact for normal errors, needs no random draws, and an end is None where the interval is
    unbounded on that side."""
    x, y, target = np.asarray(x, float), np.asarray(y, float), np.atleast_1d(np.asarray(target, float))
    n, m = len(x), len(target)
    fit = {"n": n, "slope": math.nan, "slope_ci": (math.nan, math.nan), "intercept": math.nan,
           "intercept_ci": (math.nan, math.nan), "crossing": None, "crossing_ci": (None, None)}
    if n < 3 or len(np.unique(x)) < 2:
        return fit
    r = stats.linregress(x, y)
    t = stats.t.ppf(0.5 + level / 2, n - 2)
    fit.update(slope=float(r.slope), slope_ci=(float(r.slope - t * r.stderr), float(r.slope + t * r.stderr)),
               intercept=float(r.intercept),
               intercept_ci=(float(r.intercept - t * r.intercept_stderr), float(r.intercept + t * r.intercept_stderr)))
    if m == 0 or not min(sign * v for v in fit["slope_ci"]) > 0:
        return fit
    sxx = float(((x - x.mean()) ** 2).sum())
    s2 = float(((y - r.intercept - r.slope * x) ** 2).sum()) / (n - 2)
    d, u = y.mean() - target.mean(), (target.mean() - y.mean()) / r.slope  # the crossing is x.mean() + u
    v_line, v_target = s2 * (1 / n + u**2 / sxx), (target.var(ddof=1) / m if m > 1 else 0.0)
    parts = v_line**2 / (n - 2) + (v_target**2 / (m - 1) if m > 1 else 0.0)
    df = (v_line + v_target) ** 2 / parts if parts > 0 else n - 2
    ends = fieller(r.slope, d, s2, sxx, s2 / n + v_target, stats.t.ppf(0.5 + level / 2, df))
    fit["crossing"] = float(x.mean() + u)
    fit["crossing_ci"] = tuple(None if e is None else float(x.mean() + e) for e in ends)
    return fit
