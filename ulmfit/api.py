"""Python API: trained models on raw text, batched, on the CPU or a GPU.

    from ulmfit import load_classifier, load_language_model

    clf = load_classifier("models/trec_clf")           # or a list of folders: a fwd + bwd ensemble
    clf.predict(["What is the capital of France?"])    # [("LOC", 0.93)]: class and its probability
    clf.predict_proba(texts)                           # array [texts, classes], rows sum to 1

    lm = load_language_model("models/lm/imdb/fwd")
    lm.next_token_probs("This film is", k=5)           # [(token, probability)], the most likely first
    lm.perplexity("This film is great.")               # exp(mean next-token cross-entropy)

Both take device= ("cpu", "cuda"; default: cuda when available) and precision= ("auto", the default:
bf16 where the device runs it natively, fp32 elsewhere; or "fp32", "bf16").

A backward language model reads the text from its end, so its "next" token is the one before the text.
"""

from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, load_model
from .data import DataError
from .precision import autocast, check_device, resolve
from .steps import load_classifier as load_classifier_model
from .text import Vocab, numericalize, tokenize
from .train import predict_probs


def check_texts(texts):
    """The texts as a list; a DataError names the first that is empty, whitespace-only or not a string."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise DataError("no text to classify; pass at least one text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"text {i + 1} is a {type(text).__name__}, not a string; pass texts as strings")
        if not text.strip():
            raise DataError(f"text {i + 1} is empty or whitespace-only; give text to classify")
    return texts


class TextClassifier:
    """One classifier folder, or several of one task whose probabilities are averaged."""

    def __init__(self, directories, device=None, precision="auto"):
        self.device = check_device(device)
        self.members, self.classes = [], None
        directories = [directories] if isinstance(directories, (str, Path)) else list(directories)
        if not directories:
            raise ValueError("no classifier folder given; pass a folder written by train-clf, or a list of them")
        for directory in directories:
            model, obj = load_classifier_model(directory, self.device)
            if self.classes is not None and obj["classes"] != self.classes:
                raise CheckpointError(f"{directory} predicts classes {obj['classes']}, not {self.classes}; "
                                      "ensemble models of one task")
            self.classes = obj["classes"]
            self.members.append((model, Vocab(obj["vocab"]), obj["meta"].get("direction", "fwd")))
        self.precision = resolve(precision, self.device)

    def predict_proba(self, texts, batch_size=64):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        tokens = [tokenize(t) for t in check_texts(texts)]
        probs = []
        for model, vocab, direction in self.members:
            docs = numericalize(tokens, vocab)
            probs.append(predict_probs(model, docs.reversed() if direction == "bwd" else docs, batch_size, self.device,
                                       self.precision))
        return np.mean(probs, axis=0)

    def predict(self, texts, batch_size=64):
        probs = self.predict_proba(texts, batch_size)
        return [(self.classes[int(i)], float(p[i])) for p, i in zip(probs, probs.argmax(1))]


class TextLanguageModel:
    """A pretrained or fine-tuned language model folder."""

    def __init__(self, directory, device=None, precision="auto"):
        self.device = check_device(device)
        self.model, obj = load_model(directory, self.device)
        self.precision = resolve(precision, self.device)
        if obj["kind"] != "lm":
            raise CheckpointError(f"{directory} holds a classifier, not a language model; pass a folder written by "
                                  "pretrain or finetune-lm")
        self.vocab, self.direction = Vocab(obj["vocab"]), obj["meta"].get("direction", "fwd")

    def _ids(self, text):
        if not isinstance(text, str):
            raise DataError(f"pass one text as a string, got {type(text).__name__}")
        ids = self.vocab.numericalize(tokenize(check_texts(text)[0])).astype(np.int64)
        ids = ids[::-1].copy() if self.direction == "bwd" else ids
        return torch.from_numpy(ids)[None].to(self.device)

    @torch.no_grad()
    def next_token_probs(self, text, k=10):
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self.vocab.itos):
            raise ValueError(f"k must be a whole number from 1 to the vocabulary size {len(self.vocab.itos)}, got {k!r}")
        with autocast(self.precision, self.device):
            logits = self.model(self._ids(text))[0][0, -1].float()
        probs, ids = torch.softmax(logits, -1).topk(k)
        return [(self.vocab.itos[i], float(p)) for p, i in zip(probs.tolist(), ids.tolist())]

    @torch.no_grad()
    def perplexity(self, text):
        """exp(mean next-token cross-entropy) of one text, or a list of them for a list of texts."""
        if not isinstance(text, str):
            return [self.perplexity(t) for t in check_texts(text)]
        ids = self._ids(text)
        if ids.shape[1] < 2:
            raise DataError("perplexity needs a text of at least one token")
        with autocast(self.precision, self.device):
            return float(torch.exp(self.model.loss(ids[:, :-1], ids[:, 1:])[0]))


def load_classifier(directories, device=None, precision="auto"):
    return TextClassifier(directories, device, precision)


def load_language_model(directory, device=None, precision="auto"):
    return TextLanguageModel(directory, device, precision)
