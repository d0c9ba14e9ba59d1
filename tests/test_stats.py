import math

import numpy as np
import pytest

from ulmfit.stats import fmt, mean_ci, paired_diff, trend


def test_mean_ci_on_known_numbers():
    mean, half, n = mean_ci([0.10, 0.12, 0.14])
    assert n == 3 and mean == pytest.approx(0.12)
    # sd = 0.02, t(0.975, 2) = 4.302653: half-width = 4.302653 * 0.02 / sqrt(3)
    assert half == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    mean, half, n = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0 and half == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)


def test_mean_ci_edge_cases():

    assert mean_ci([0.2])[2] == 1 and math.isnan(mean_ci([0.2])[1])
    assert mean_ci([])[2] == 0 and math.isnan(mean_ci([])[0])
    assert mean_ci([0.3, None, math.nan, 0.5])[:1] == (pytest.approx(0.4),)
    assert mean_ci([0.3, 0.3, 0.3])[1] == 0.0


def test_paired_difference_uses_matching_seeds_only():
    variant = {0: 0.20, 1: 0.25, 2: 0.30, 7: 0.9}
    reference = {0: 0.10, 1: 0.17, 2: 0.18, 3: 0.5}
    mean, half, n = paired_diff(variant, reference)
    diffs = [0.10, 0.08, 0.12]
    assert n == 3 and mean == pytest.approx(0.10)
    sd = math.sqrt(sum((d - 0.10) ** 2 for d in diffs) / 2)
    assert half == pytest.approx(4.302653 * sd / math.sqrt(3), rel=1e-6)
    # pairing removes the shared seed-to-seed variation: the paired interval is narrower here
    assert half < mean_ci(variant.values())[1]


def test_fmt():
    assert fmt(0.12345, 0.0123) == "12.35 ± 1.23"
    assert fmt(-0.01, 0.005, signed=True) == "-1.00 ± 0.50"
    assert fmt(0.01, math.nan, signed=True) == "+1.00"
    assert fmt(math.nan, math.nan) == "–"



# A known line, y = 0.40 - 0.05 x, three seeds a level at x = 0..5, with seed noise that sums to 0 at every level
# (so the least-squares line is exactly the true one); it reaches 0.15 at x = 5.
NOISE = (-0.01, 0.0, 0.01)
LINE_X = [x for x in range(6) for _ in NOISE]
LINE_Y = [0.40 - 0.05 * x + e for x in range(6) for e in NOISE]
BASELINE = [0.14, 0.15, 0.16]


def test_trend_recovers_a_known_line_and_where_it_reaches_the_target():
    fit = trend(LINE_X, LINE_Y, BASELINE)
    assert fit["n"] == 18
    assert fit["slope"] == pytest.approx(-0.05) and fit["intercept"] == pytest.approx(0.40)
    assert fit["slope_ci"][0] < -0.05 < fit["slope_ci"][1] < 0
    assert fit["intercept_ci"][0] < 0.40 < fit["intercept_ci"][1]
    assert fit["crossing"] == pytest.approx(5.0)
    lo, hi = fit["crossing_ci"]
    assert 4.0 < lo < 5.0 < hi < 6.0
    assert trend(LINE_X, LINE_Y, BASELINE) == fit  # no random draws: the same data give the same numbers


def test_trend_slope_interval_is_the_student_t_one():
    fit = trend([0, 1, 2, 3], [0.0, 1.0, 1.0, 3.0], [10.0], sign=1)
    # slope 0.9, residual variance 0.7 / 2, Sxx 5: half-width t(0.975, 2) * sqrt(0.35 / 5)
    half = 4.302653 * math.sqrt(0.35 / 5)
    assert fit["slope"] == pytest.approx(0.9) and fit["slope_ci"] == pytest.approx((0.9 - half, 0.9 + half), rel=1e-6)


def test_trend_crossing_interval_covers_the_true_crossing_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):
        y = [0.40 - 0.05 * x + rng.normal(0, 0.02) for x in LINE_X]
        lo, hi = trend(LINE_X, y, 0.15 + rng.normal(0, 0.01, 3))["crossing_ci"]
        covered += lo < 5.0 < hi
    assert 0.92 <= covered / 400 <= 0.98


def test_trend_has_no_crossing_for_a_flat_or_wrong_signed_line():
    flat = [0.30 + e for _ in range(6) for e in NOISE]
    assert trend(LINE_X, flat, BASELINE)["crossing"] is None
    assert trend(LINE_X, flat, BASELINE)["crossing_ci"] == (None, None)
    rising = [0.20 + 0.05 * x + e for x in range(6) for e in NOISE]
    assert trend(LINE_X, rising, BASELINE)["crossing"] is None  # error grows with compute: never reaches the baseline
    assert trend(LINE_X, rising, BASELINE, sign=1)["crossing"] == pytest.approx(-1.0)  # the same line, expected rising
    assert trend([1, 1, 1], [0.1, 0.2, 0.3], BASELINE)["crossing"] is None  # one x: no line
    assert trend(LINE_X, LINE_Y, [])["crossing"] is None  # no baseline runs


def test_trend_interval_is_open_where_the_data_cannot_bound_it():
    weak = [0.40 - 0.01 * x + 3.5 * e for x in range(6) for e in NOISE]  # slope -0.01, its interval just below 0
    fit = trend(LINE_X, weak, BASELINE)
    assert fit["slope_ci"][1] < 0 and fit["crossing"] == pytest.approx(25.0)
    assert 10 < fit["crossing_ci"][0] < 25.0 < fit["crossing_ci"][1]  # far wider than the well-measured line's
    lo, hi = trend(LINE_X, weak, [0.05, 0.25])["crossing_ci"]  # a baseline known only to +-0.1 (t with ~1 d.f.)
    assert lo < 25.0 and hi is None
