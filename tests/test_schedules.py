import math

import pytest

from ulmfit.schedules import cosine, group_rates, learning_rate, stlr, trainable_groups


def paper_stlr(t, T, eta_max=0.01, cut_frac=0.1, ratio=32):
    cut = math.floor(T * cut_frac)
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return eta_max * (1 + p * (ratio - 1)) / ratio


@pytest.mark.parametrize("T", [100, 1000, 357])
def test_stlr_matches_the_paper_formula_at_key_iterations(T):
    cut = math.floor(T * 0.1)
    for t in (0, cut - 1, cut, T - 1):
        assert stlr(t, T) == pytest.approx(paper_stlr(t, T), rel=1e-12)


def test_stlr_shape():
    T = 1000
    assert stlr(0, T) == pytest.approx(0.01 / 32)  # starts at eta_max / ratio
    assert stlr(100, T) == pytest.approx(0.01)  # peaks at the cut
    assert stlr(T, T) == pytest.approx(0.01 / 32)  # back to eta_max / ratio at T
    rising = [stlr(t, T) for t in range(101)]
    falling = [stlr(t, T) for t in range(100, T)]
    assert rising == sorted(rising) and falling == sorted(falling, reverse=True)


def test_cosine_and_constant():
    assert cosine(0, 10, 0.01) == pytest.approx(0.01)
    assert cosine(5, 10, 0.01) == pytest.approx(0.005)
    assert learning_rate("constant", 7, 10, 0.001) == 0.001
    with pytest.raises(ValueError, match="unknown schedule"):
        learning_rate("linear", 0, 10, 0.01)


def test_discriminative_rates_fall_by_2_6_per_group():
    rates = group_rates(5, 0.01, 2.6)
    assert rates[-1] == pytest.approx(0.01)
    for lower, upper in zip(rates, rates[1:]):
        assert upper / lower == pytest.approx(2.6)
    assert group_rates(5, 0.01, 1.0) == [0.01] * 5
    assert group_rates(5, 0.001, 2.6, body_lr=0.0001) == [0.0001] * 4 + [0.001]


def test_unfreezing_strategies():
    n = 5  # embedding, three LSTM layers, head
    gradual = [trainable_groups("gradual", e, n) for e in range(6)]
    assert gradual[0] == [False, False, False, False, True]
    assert gradual[1] == [False, False, False, True, True]
    assert gradual[3] == [False, True, True, True, True]
    assert gradual[4] == gradual[5] == [True] * 5
    assert all(trainable_groups("last", e, n) == [False] * 4 + [True] for e in range(5))
    assert all(trainable_groups("full", e, n) == [True] * 5 for e in range(5))
    chain = [trainable_groups("chain_thaw", e, n) for e in range(7)]
    assert chain[0] == [False, False, False, False, True]  # the new layer first
    assert [c.index(True) for c in chain[1:5]] == [0, 1, 2, 3] and all(sum(c) == 1 for c in chain[1:5])
    assert chain[5] == chain[6] == [True] * 5
