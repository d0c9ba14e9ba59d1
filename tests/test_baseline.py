"""The bag-of-words baseline scores its probabilities against the dataset's classes, also when its labelled sample
lacks some of them (rare classes, small Figure 3 budgets)."""

import numpy as np

from ulmfit.baseline import bow_classifier, bow_probs
from ulmfit.text import Docs


def docs_of(labels, seed=0):
    """Each document holds its class's own word (10 + class) among random filler words."""
    rng = np.random.default_rng(seed)
    seqs = [np.concatenate([rng.integers(20, 60, 8), [10 + c], rng.integers(20, 60, 8)]) for c in labels]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    return Docs(np.concatenate(seqs).astype(np.int32), offsets, np.asarray(labels, dtype=np.int64))


def test_probabilities_cover_every_class_and_a_class_missing_from_the_sample_gets_zero():
    train = docs_of([0, 2, 3] * 10)  # classes 0, 2, 3 of 4: class 1 has no labelled example
    model = bow_classifier(train)
    test = docs_of([0, 2, 3, 1], seed=1)
    probs = bow_probs(model, test, n_classes=4)
    assert probs.shape == (4, 4) and np.allclose(probs.sum(1), 1) and (probs[:, 1] == 0).all()
    assert probs[:3].argmax(1).tolist() == [0, 2, 3]  # scored against the right classes, not columns 0, 1, 2
