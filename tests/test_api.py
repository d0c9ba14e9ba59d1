"""The Python API on small models saved in the test: the same numbers as the steps and the model."""

import math

import numpy as np
import pytest
import torch

from ulmfit import load_classifier, load_language_model
from ulmfit.awd_lstm import Classifier, LanguageModel
from ulmfit.checkpoint import CheckpointError, save_model
from ulmfit.cli import main
from ulmfit.config import ModelConfig
from ulmfit.data import DataError
from ulmfit.text import SPECIAL_TOKENS, tokenize

TINY = ModelConfig(emb_size=8, hidden_size=12)
TEXTS = ["What is the capital of France ?", "Who wrote Hamlet ?", "How far is the moon ?"]
VOCAB = SPECIAL_TOKENS + sorted({t for text in TEXTS for t in tokenize(text)} - set(SPECIAL_TOKENS))
CLASSES = ["LOC", "HUM", "NUM"]


def save_classifier(path, seed, direction):
    torch.manual_seed(seed)
    save_model(path, Classifier(len(VOCAB), len(CLASSES), TINY, bptt=5, max_len=10).eval(), VOCAB, CLASSES,
               meta={"direction": direction})
    return path


def test_classifier_probabilities_are_the_ensemble_mean_and_the_cli_prints_the_predictions(tmp_path, capsys):
    fwd, bwd = save_classifier(tmp_path / "fwd", 0, "fwd"), save_classifier(tmp_path / "bwd", 1, "bwd")
    probs = load_classifier([fwd, bwd], "cpu").predict_proba(TEXTS)
    alone = [load_classifier(d, "cpu").predict_proba(TEXTS) for d in (fwd, bwd)]
    assert probs.shape == (3, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.allclose(probs, (alone[0] + alone[1]) / 2)
    ours = load_classifier([fwd, bwd], "cpu").predict(TEXTS)
    assert ours == [(CLASSES[i], pytest.approx(float(p[i]))) for p, i in zip(probs, probs.argmax(1))]
    assert main(["predict", "--model", str(fwd), "--model", str(bwd), "--device", "cpu", *TEXTS]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{c}\t{p:.4f}" for c, p in ours]


def test_language_model_next_token_and_perplexity(tmp_path):
    torch.manual_seed(0)
    model = LanguageModel(len(VOCAB), TINY).eval()
    save_model(tmp_path / "lm", model, VOCAB, meta={"direction": "fwd"})
    lm = load_language_model(tmp_path / "lm", "cpu")
    ids = torch.tensor([[VOCAB.index(t) for t in tokenize(TEXTS[0])]])
    with torch.no_grad():
        logits = model(ids)[0][0].float()
    top = lm.next_token_probs(TEXTS[0], k=3)
    expected = torch.softmax(logits[-1], -1)
    assert [t for t, _ in top] == [VOCAB[i] for i in expected.topk(3).indices.tolist()]
    assert [p for _, p in top] == pytest.approx(expected.topk(3).values.tolist(), rel=1e-5)
    nll = torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:])
    assert lm.perplexity(TEXTS[0]) == pytest.approx(math.exp(nll.item()), rel=1e-4)


def test_api_refuses_the_wrong_kind_of_folder_and_empty_text(tmp_path):
    save_model(tmp_path / "lm", LanguageModel(len(VOCAB), TINY), VOCAB, meta={"direction": "fwd"})
    clf = save_classifier(tmp_path / "clf", 0, "fwd")
    with pytest.raises(CheckpointError, match="not a classifier"):
        load_classifier(tmp_path / "lm")
    with pytest.raises(CheckpointError, match="not a language model"):
        load_language_model(clf)
    with pytest.raises(DataError, match="empty"):
        load_classifier(clf, "cpu").predict(["  "])


def test_api_arguments_are_checked_up_front_with_a_message(tmp_path):
    clf = save_classifier(tmp_path / "clf", 0, "fwd")
    save_model(tmp_path / "lm", LanguageModel(len(VOCAB), TINY), VOCAB, meta={"direction": "fwd"})
    lm = load_language_model(tmp_path / "lm", "cpu")
    for batch_size in (-1, 0, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
            load_classifier(clf, "cpu").predict_proba(TEXTS, batch_size=batch_size)
    with pytest.raises(ValueError, match="no classifier folder given"):
        load_classifier([])
    for k in (-1, 0, len(VOCAB) + 1):
        with pytest.raises(ValueError, match="k must be a whole number from 1 to the vocabulary size"):
            lm.next_token_probs(TEXTS[0], k=k)
    assert lm.perplexity(TEXTS[:2]) == [lm.perplexity(TEXTS[0]), lm.perplexity(TEXTS[1])]  # one per text
    for device in ("mps", "nonsense", "CPU", "cuda:x"):
        with pytest.raises(ValueError, match=f"device '{device}' is not one this suite runs on; use cpu or cuda"):
            load_classifier(clf, device)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device cuda: CUDA is not available on this machine; use cpu"):
            load_language_model(tmp_path / "lm", "cuda")
