"""Learning-rate schedules, discriminative rates and unfreezing strategies (ULMFiT section 3.2-3.3).

Layer groups are numbered from the bottom. A classifier's are the embedding, each LSTM layer and
the head; a language model's are each LSTM layer and the head, its decoder, whose weight is the
tied embedding (fastai's split).
"""

import math


def stlr(t, T, eta_max=0.01, cut_frac=0.1, ratio=32):
    """Slanted triangular learning rate at iteration t of T (paper eq. 3).

    cut = floor(T * cut_frac); p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1));
    eta_t = eta_max * (1 + p * (ratio - 1)) / ratio. For T < 1 / cut_frac the cut is 1 iteration.
    """
    cut = max(1, math.floor(T * cut_frac))
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return eta_max * (1 + p * (ratio - 1)) / ratio


def cosine(t, T, eta_max):
    """Cosine annealing from eta_max to 0 over T iterations (Loshchilov & Hutter 2017)."""
    return eta_max * 0.5 * (1 + math.cos(math.pi * t / T))


def learning_rate(schedule, t, T, eta_max, cut_frac=0.1, ratio=32):
    """The rate of the top layer group at iteration t of T."""
    if schedule == "stlr":
        return stlr(t, T, eta_max, cut_frac, ratio)
    if schedule == "cos":
        return cosine(t, T, eta_max)
    if schedule == "constant":
        return eta_max
    raise ValueError(f"unknown schedule {schedule!r}; use stlr, cos or constant")


def group_rates(n_groups, lr, discr=2.6, body_lr=0.0):
    """Per-group rate multipliers' base values, bottom to top: eta^(l-1) = eta^l / discr.

    discr = 1 gives uniform rates. With body_lr > 0 (chain-thaw) the head gets `lr` and every
    other group `body_lr`.
    """
    if body_lr > 0:
        return [body_lr] * (n_groups - 1) + [lr]
    return [lr / discr ** (n_groups - 1 - g) for g in range(n_groups)]


def trainable_groups(strategy, epoch, n_groups):
    """Which layer groups train in `epoch` (0-based), bottom to top, as a list of booleans.

    gradual: the top group in epoch 0, one more group from the top each epoch (ULMFiT).
    last: only the top group. full: every group from the start.
    chain_thaw (Felbo et al. 2017): the new top group, then each other group alone from the
    bottom up, then all groups for the remaining epochs.
    """
    top = n_groups - 1
    if strategy == "full":
        return [True] * n_groups
    if strategy == "last":
        return [g == top for g in range(n_groups)]
    if strategy == "gradual":
        return [g >= top - epoch for g in range(n_groups)]
    if strategy == "chain_thaw":
        if epoch == 0:
            return [g == top for g in range(n_groups)]
        if epoch <= top:
            return [g == epoch - 1 for g in range(n_groups)]
        return [True] * n_groups
    raise ValueError(f"unknown unfreezing strategy {strategy!r}; use gradual, last, full or chain_thaw")
