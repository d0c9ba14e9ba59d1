"""The ULMFiT steps, each reading and writing directories: prepare a dataset, pretrain a
language model, fine-tune it on a target dataset, train a classifier, evaluate on the test
split, predict. The command line (`ulmfit ...`) and the DVC stages (`experiments/*.py`) call
these functions and nothing else.

Layout of a prepared dataset directory: vocab.json, info.json and Docs files train.npz (the
labelled training pool, after the validation split is carved out), valid.npz, test.npz and,
where the dataset has them, unlabelled.npz. A language corpus has train.npz and valid.npz.
"""

import json
import resource
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from . import data as D
from .awd_lstm import Classifier, LanguageModel, transfer_vocab
from .checkpoint import check_vocab, load_model, load_weights, model_config, read, save_model
from .io import read_json, write_json
from .text import Docs, Vocab, numericalize, tokenize, tokenize_texts
from .train import confusion, error_rate, predict_probs, train_classifier, train_lm


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def measured(record):
    """Fill `record` with the wall time and the peak resident memory of this process and its children."""
    start = time.time()
    yield record
    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    record.update(wall_s=round(time.time() - start, 2), peak_mem_mb=round(peak_kb / 1024, 1))


def dvclive_logger(directory):
    """A per-epoch logger writing DVCLive metrics to `directory` (None: no logging)."""
    if directory is None:
        return None, lambda: None
    from dvclive import Live

    live = Live(str(directory), save_dvc_exp=False, dvcyaml=False)

    def on_epoch(record):
        for key, value in record.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                live.log_metric(key, value)
        live.next_step()

    return on_epoch, live.end


# ---------------------------------------------------------------- prepare


def _clean(texts, labels, what):
    """Drop empty or whitespace-only documents, counting them; an empty result is an error."""
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if not keep:
        raise D.DataError(f"{what}: every document is empty or whitespace-only; check the data source")
    return [texts[i] for i in keep], (None if labels is None else labels[keep]), len(texts) - len(keep)


def _cap(n, limit, seed, labels=None):
    """Indices of at most `limit` of n items (stratified when labels are given); all if limit is 0."""
    if not limit or n <= limit:
        return np.arange(n)
    if labels is not None:
        return D.stratified_sample(labels, limit, seed, balanced=False)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def prepare(dataset, out_dir, mirror=None, valid_frac=0.1, split_seed=42, max_vocab=60000, min_freq=3,
            max_train=0, max_valid=0, max_test=0, max_unlabelled=0, max_words=0, repartition_test=0.0, workers=2,
            progress=None):
    """Load, split, tokenize and numericalize one dataset into `out_dir`; returns its info dict.

    The validation split is carved from train first (seeded, stratified); then the max_* caps
    take seeded stratified subsets of the remaining labelled pool, validation, test and
    unlabelled texts (0 = no cap). repartition_test > 0 splits the official test split into
    train and test (for AG News offline, whose train split is unavailable).
    """
    out_dir = Path(out_dir)
    spec = D.spec(dataset)
    info = {"dataset": dataset, "classes": list(spec.classes), "skipped_empty": {}}
    splits = {}  # name -> (texts, labels)

    def take(split_texts, split_labels, name):
        texts, labels, skipped = _clean(split_texts, split_labels, f"{dataset}/{name}")
        info["skipped_empty"][name] = skipped
        splits[name] = (texts, labels)

    if not spec.label:  # a language-model corpus
        for split, name in (("train", "train"), ("validation", "valid")):
            lines = D.load(dataset, split, mirror)["text"]
            articles = D.wiki_articles(lines)
            if name == "train" and max_words:
                order = np.random.default_rng(split_seed).permutation(len(articles))
                words = np.cumsum([len(articles[i].split()) for i in order])
                articles = [articles[i] for i in np.sort(order[: int(np.searchsorted(words, max_words)) + 1])]
            take(articles, None, name)
    else:
        if repartition_test:
            texts, labels = D.texts_and_labels(D.load(dataset, "test", mirror), dataset)
            train_idx, test_idx = D.train_valid_split(labels, repartition_test, split_seed)
            info["repartitioned"] = f"official test split ({len(labels)} rows) re-partitioned: {len(train_idx)} train, {len(test_idx)} test"
            train = ([texts[i] for i in train_idx], labels[train_idx])
            test = ([texts[i] for i in test_idx], labels[test_idx])
        else:
            train = D.texts_and_labels(D.load(dataset, "train", mirror), dataset)
            test = D.texts_and_labels(D.load(dataset, "test", mirror), dataset)
        texts, labels, skipped = _clean(*train, f"{dataset}/train")
        info["skipped_empty"]["train"] = skipped
        train_idx, valid_idx = D.train_valid_split(labels, valid_frac, split_seed)
        train_idx = train_idx[_cap(len(train_idx), max_train, split_seed, labels[train_idx])]
        valid_idx = valid_idx[_cap(len(valid_idx), max_valid, split_seed, labels[valid_idx])]
        splits["train"] = ([texts[i] for i in train_idx], labels[train_idx])
        splits["valid"] = ([texts[i] for i in valid_idx], labels[valid_idx])
        texts, labels, skipped = _clean(*test, f"{dataset}/test")
        info["skipped_empty"]["test"] = skipped
        keep = _cap(len(texts), max_test, split_seed, labels)
        splits["test"] = ([texts[i] for i in keep], labels[keep])
        if "unsupervised" in spec.splits:
            texts, _ = D.texts_and_labels(D.load(dataset, "unsupervised", mirror), dataset)
            take(texts, None, "unlabelled")
            texts = splits["unlabelled"][0]
            splits["unlabelled"] = ([texts[i] for i in _cap(len(texts), max_unlabelled, split_seed)], None)

    tokens = {name: tokenize_texts(texts, workers=workers, progress=progress) for name, (texts, _) in splits.items()}
    vocab_text = tokens["train"] + tokens.get("unlabelled", [])
    vocab = Vocab.build(vocab_text, max_size=max_vocab, min_freq=min_freq)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (_, labels) in splits.items():
        docs = numericalize(tokens[name], vocab, labels)
        docs.save(out_dir / f"{name}.npz")
        info[name] = {"docs": len(docs), "tokens": int(docs.n_tokens)}
        if labels is not None:
            info[name]["per_class"] = np.bincount(labels, minlength=len(spec.classes)).tolist()
    info["vocab_size"] = len(vocab)
    info["unk_rate"] = float(np.mean(Docs.load(out_dir / "train.npz").ids == 0))
    write_json(out_dir / "vocab.json", vocab.itos)
    write_json(out_dir / "info.json", info)
    return info


def load_prepared(data_dir, split, direction="fwd"):
    path = Path(data_dir) / f"{split}.npz"
    if not path.exists():
        raise D.DataError(f"{path} does not exist; run the prepare step for {Path(data_dir).name} first")
    docs = Docs.load(path)
    return docs.reversed() if direction == "bwd" else docs


def load_vocab(data_dir):
    return Vocab(read_json(Path(data_dir) / "vocab.json"))


# ---------------------------------------------------------------- language models


def pretrain(corpus_dir, out_dir, model_cfg, lm_cfg, direction="fwd", seed=0, device=None, progress=None):
    """Train a general-domain language model from scratch on a prepared corpus."""
    device = device or default_device()
    vocab = load_vocab(corpus_dir)
    record = {"direction": direction, "seed": seed}
    with measured(record):
        torch.manual_seed(seed)
        model = LanguageModel(len(vocab), model_cfg)
        on_epoch, end = dvclive_logger(Path(out_dir) / "dvclive")
        record["history"] = train_lm(model, load_prepared(corpus_dir, "train", direction),
                                     load_prepared(corpus_dir, "valid", direction), lm_cfg, seed, device, on_epoch,
                                     Path(out_dir).with_name(Path(out_dir).name + ".resume.pt"), progress)
        end()
        save_model(out_dir, model, vocab.itos, meta={"direction": direction, "lm_config": asdict(lm_cfg)})
    record.update(valid_ppl=record["history"][-1].get("valid_ppl"))
    write_json(Path(out_dir) / "metrics.json", record)
    return record


def lm_text(data_dir, text, seed, budget=0, balanced=True, direction="fwd"):
    """The target text a language model is fine-tuned on.

    text="all": every training document (labelled pool plus any unlabelled split);
    text="labelled": only the `budget` labelled examples the classifier of the same seed sees.
    """
    train = load_prepared(data_dir, "train", direction)
    if text == "labelled":
        return train.subset(D.stratified_sample(train.labels, budget, seed, balanced)) if budget else train
    if text != "all":
        raise ValueError(f"unknown LM fine-tuning text {text!r}; use all or labelled")
    unlabelled = Path(data_dir) / "unlabelled.npz"
    if unlabelled.exists():
        return Docs.concat([train, load_prepared(data_dir, "unlabelled", direction)])
    return train


def finetune_lm(data_dir, out_dir, lm_cfg, pretrained_dir=None, model_cfg=None, direction="fwd", text="all",
                budget=0, balanced=True, seed=0, device=None, progress=None):
    """Fine-tune a language model on a target dataset's text.

    The pretrained model's vocabulary is mapped onto the dataset's (new tokens start at the mean
    embedding). Without `pretrained_dir` the model starts from random weights of `model_cfg`.
    With lm_cfg None the mapped model is saved unchanged ("no LM fine-tuning").
    """
    device = device or default_device()
    vocab = load_vocab(data_dir)
    record = {"direction": direction, "seed": seed, "text": text, "budget": budget,
              "pretrained": str(pretrained_dir) if pretrained_dir else None}
    with measured(record):
        torch.manual_seed(seed)
        if pretrained_dir:
            obj = read(pretrained_dir)
            if obj["meta"].get("direction", "fwd") != direction:
                raise ValueError(f"{pretrained_dir} is a {obj['meta'].get('direction')} model; this step needs {direction}")
            model_cfg = model_config(obj)
            model = LanguageModel(len(vocab), model_cfg)
            load_weights(model, transfer_vocab(obj["state_dict"], obj["vocab"], vocab.itos), obj["path"])
        else:
            model = LanguageModel(len(vocab), model_cfg)
        valid = load_prepared(data_dir, "valid", direction)
        if lm_cfg is not None:
            on_epoch, end = dvclive_logger(Path(out_dir) / "dvclive")
            docs = lm_text(data_dir, text, seed, budget, balanced, direction)
            record["train_tokens"] = int(docs.n_tokens)
            record["history"] = train_lm(model, docs, valid, lm_cfg, seed, device, on_epoch,
                                         Path(out_dir).with_name(Path(out_dir).name + ".resume.pt"), progress)
            end()
            record["valid_ppl"] = record["history"][-1]["valid_ppl"]
        else:
            from .train import lm_loss
            from .config import LMConfig

            record["valid_ppl"] = float(np.exp(lm_loss(model.to(device), valid, LMConfig(), device)))
        save_model(out_dir, model, vocab.itos, meta={"direction": direction, "lm_config": asdict(lm_cfg) if lm_cfg else None})
    write_json(Path(out_dir) / "metrics.json", record)
    return record


# ---------------------------------------------------------------- classifiers


def flatness(history, frac=0.2):
    """Relative change of the training loss over the last `frac` of epochs (small = flattened)."""
    losses = [h["train_loss"] for h in history]
    k = max(1, int(round(len(losses) * frac)))
    if len(losses) <= k:
        return None
    before = losses[-k - 1]
    return float((before - losses[-1]) / max(abs(before), 1e-8))


def train_clf(data_dir, out_dir, clf_cfg, lm_dir=None, model_cfg=None, direction="fwd", budget=0, balanced=True,
              seed=0, keep_model=True, device=None, progress=None):
    """Train a classifier on `budget` labelled examples (0 = the whole pool) and report its
    validation error. The encoder comes from the fine-tuned language model in `lm_dir`, or from
    random weights of `model_cfg` when lm_dir is None (training from scratch)."""
    device = device or default_device()
    info = read_json(Path(data_dir) / "info.json")
    vocab = load_vocab(data_dir)
    record = {"direction": direction, "seed": seed, "budget": budget, "lm": str(lm_dir) if lm_dir else None}
    with measured(record):
        train = load_prepared(data_dir, "train", direction)
        if budget:
            train = train.subset(D.stratified_sample(train.labels, budget, seed, balanced, info["classes"]))
        valid = load_prepared(data_dir, "valid", direction)
        if lm_dir:
            obj = read(lm_dir)
            check_vocab(obj, vocab.itos)
            if obj["meta"].get("direction", "fwd") != direction:
                raise ValueError(f"{lm_dir} is a {obj['meta'].get('direction')} model; this classifier needs {direction}")
            model_cfg = model_config(obj)
        torch.manual_seed(seed)
        model = Classifier(len(vocab), len(info["classes"]), model_cfg, clf_cfg.bptt, clf_cfg.max_len)
        if lm_dir:
            load_weights(model, obj["state_dict"], obj["path"], prefix="encoder.")
        on_epoch, end = dvclive_logger(Path(out_dir) / "dvclive")
        history = train_classifier(model, train, valid, clf_cfg, seed, device, on_epoch,
                                   Path(out_dir).with_name(Path(out_dir).name + ".resume.pt"), progress)
        end()
        probs = predict_probs(model, valid, clf_cfg.batch_size, device, clf_cfg.precision)
        record.update(
            n_train=len(train), valid_error=error_rate(probs, valid.labels),
            valid_confusion=confusion(probs, valid.labels, len(info["classes"])).tolist(),
            train_loss=history[-1]["train_loss"], loss_flatness=flatness(history),
            best_epoch=min(history, key=lambda h: h.get("valid_error", np.inf))["epoch"] if clf_cfg.early_stop else len(history),
            history=history,
        )
        if keep_model:
            save_model(out_dir, model, vocab.itos, info["classes"], meta={"direction": direction, "dataset": info["dataset"]})
    write_json(Path(out_dir) / "metrics.json", record)
    return record


def evaluate(data_dir, model_dirs, out_path, device=None, batch_size=64):
    """Test error of each classifier and of the ensemble that averages their probabilities."""
    device = device or default_device()
    result = {"models": {}}
    with measured(result):
        probs = []
        for name, directory in model_dirs.items():
            model, obj = load_model(directory, device)
            direction = obj["meta"].get("direction", "fwd")
            check_vocab(obj, load_vocab(data_dir).itos)
            test = load_prepared(data_dir, "test", direction)
            p = predict_probs(model, test, batch_size, device)
            probs.append(p)
            result["models"][name] = {"test_error": error_rate(p, test.labels), "direction": direction}
        if len(probs) > 1:
            result["ensemble_test_error"] = error_rate(np.mean(probs, axis=0), test.labels)
        result["n_test"] = len(test)
    write_json(out_path, result)
    return result


def predict(model_dirs, texts, device=None):
    """[(label, probability)] for each text; several model directories are ensembled by
    averaging their probabilities (e.g. a forward and a backward classifier)."""
    if isinstance(model_dirs, (str, Path)):
        model_dirs = [model_dirs]
    if isinstance(texts, str):
        texts = [texts]
    device = device or default_device()
    probs, classes = [], None
    for directory in model_dirs:
        model, obj = load_model(directory, device)
        if classes is not None and obj["classes"] != classes:
            raise ValueError(f"{directory} predicts classes {obj['classes']}, not {classes}; ensemble models of one task")
        classes = obj["classes"]
        vocab = Vocab(obj["vocab"])
        docs = numericalize([tokenize(t) for t in texts], vocab)
        if obj["meta"].get("direction") == "bwd":
            docs = docs.reversed()
        probs.append(predict_probs(model, docs, 64, device))
    mean = np.mean(probs, axis=0)
    return [(classes[int(i)], float(p[i])) for p, i in zip(mean, mean.argmax(1))]


def summary(path):
    return json.dumps(read_json(path), indent=2)
