import math

import pytest

from ulmfit.stats import fmt, mean_ci, paired_diff


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
