"""The ULMFiT steps, each reading and writing directories: prepare a dataset, pretrain a
language model, fine-tune it on a target dataset, train a classifier, evaluate on the test
split. The command line (`ulmfit ...`) and the DVC stages (`experiments/*.py`) call
these functions and nothing else.

Layout of a prepared dataset directory: vocab.json, info.json and Docs files train.npz (the
labelled training pool, after the validation split is carved out), valid.npz, test.npz and,
where the dataset has them, unlabelled.npz. A language corpus has train.npz and valid.npz.
"""

import hashlib
import json
import resource
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from . import data as D
from . import distributed
from .awd_lstm import Classifier, LanguageModel, lm_flops, transfer_vocab
from .checkpoint import CheckpointError, check_vocab, load_model, load_weights, model_config, read, save_model
from .config import ConfigError, LMConfig, check_prepare
from .io import atomic_dir, check_result_file, read_json, write_json
from .precision import check_device, describe
from .text import SPECIAL_TOKENS, Docs, Vocab, numericalize, tokenize_texts
from .train import confusion, error_rate, lm_loss, predict_probs, train_classifier, train_lm

PREPARED_LAYOUT = ("info.json", "vocab.json", "*.npz")  # files of a prepared dataset, the key file first
MODEL_LAYOUT = ("metrics.json", "model.pt", "dvclive")  # files of a language model or classifier folder


def default_device():
    return check_device(None)


@contextmanager
def measured(record):
    """Fill `record` with the start and end times, the wall time and the peak resident memory of
    this process and its children."""
    start = time.time()
    yield record
    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    end = time.time()
    record.update(started=round(start, 2), finished=round(end, 2), wall_s=round(end - start, 2),
                  peak_mem_mb=round(peak_kb / 1024, 1))


@contextmanager
def output_dir(out_dir, step, inputs):
    """An atomic output directory on rank 0; a throwaway one on the other ranks of a torchrun job."""
    if distributed.is_main():
        with atomic_dir(out_dir, step, MODEL_LAYOUT, inputs) as tmp:
            yield tmp
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield Path(tmp)


def dvclive_logger(directory):
    """A DVCLive logger writing to `directory` (None: no logging), and its end function.

    log(metrics, step) records every number of `metrics` at `step`: the optimizer step for a language
    model's curves, the epoch (from 0) for a classifier's per-epoch records (see per_epoch).
    """
    if directory is None or not distributed.is_main():
        return None, lambda: None
    from dvclive import Live

    live = Live(str(directory), save_dvc_exp=False, dvcyaml=False)

    def log(metrics, step):
        live.step = step
        for key, value in metrics.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                live.log_metric(key, value)
        live.sync()

    return log, live.end


def per_epoch(log):
    """An on_epoch callback logging each epoch's record at step epoch - 1 (None stays None)."""
    return log and (lambda record: log(record, record["epoch"] - 1))


# ---------------------------------------------------------------- prepare


def _clean(texts, labels, what):
    """Drop empty or whitespace-only documents, counting them; an empty result is an error."""
    if not texts:
        raise D.DataError(f"{what} has no documents: the data is too small to carve it out (valid_frac of each class, "
                          "rounded); give the dataset more rows, or a larger valid_frac / repartition_test")
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


def read_splits(dataset, info, mirror=None, valid_frac=0.1, split_seed=42, max_train=0, max_valid=0, max_test=0,
                max_unlabelled=0, max_words=0, repartition_test=0.0):
    """The texts (and labels) of each split to prepare: train (the labelled pool), valid, test
    and unlabelled for a classification dataset; train and valid for a language-model corpus.

    The validation split is carved from train first (seeded, stratified); then the max_* caps
    take seeded stratified subsets (0 = no cap). Training texts left out of the labelled pool by
    max_train join the unlabelled texts. repartition_test > 0 splits the official test split into
    train and test (AG News offline, whose train split is unavailable). `dataset` is a name or a Spec (a user's
    file dataset); one without a test split has its test split carved from train like the validation split
    (valid_frac of each class, or repartition_test when set).
    """
    spec = D.spec(dataset)
    dataset = spec.name
    splits = {}

    def keep(name, texts, labels, cap=0):
        texts, labels, skipped = _clean(texts, labels, f"{dataset}/{name}")
        info["skipped_empty"][name] = info["skipped_empty"].get(name, 0) + skipped
        idx = _cap(len(texts), cap, split_seed, labels)
        splits[name] = ([texts[i] for i in idx], None if labels is None else labels[idx])

    if not spec.label:  # a language-model corpus: one document per article
        for split, name in (("train", "train"), ("validation", "valid")):
            articles = D.wiki_articles(D.load(spec, split, mirror)["text"])
            if name == "train" and max_words:
                order = np.random.default_rng(split_seed).permutation(len(articles))
                words = np.cumsum([len(articles[i].split()) for i in order])
                articles = [articles[i] for i in np.sort(order[: int(np.searchsorted(words, max_words)) + 1])]
            keep(name, articles, None)
        return splits
    if repartition_test or "test" not in spec.splits:
        source = "test" if "test" in spec.splits else "train"
        texts, labels = D.labelled(D.load(spec, source, mirror), spec, source)
        train_idx, test_idx = D.train_valid_split(labels, repartition_test or valid_frac, split_seed)
        what = "official test split" if source == "test" else f"file {spec.files['train']}"
        info["repartitioned"] = (f"{what} ({len(labels):,} rows) re-partitioned, stratified and seeded: "
                                 f"{len(train_idx):,} train, {len(test_idx):,} test")
        train = ([texts[i] for i in train_idx], labels[train_idx])
        test = ([texts[i] for i in test_idx], labels[test_idx])
    else:
        train = D.labelled(D.load(spec, "train", mirror), spec, "train")
        test = D.labelled(D.load(spec, "test", mirror), spec, "test")
    texts, labels, info["skipped_empty"]["train"] = _clean(*train, f"{dataset}/train")
    D.check_classes(labels, spec.classes, f"{dataset}/train")
    train_idx, valid_idx = D.train_valid_split(labels, valid_frac, split_seed)
    pool = _cap(len(train_idx), max_train, split_seed, labels[train_idx])
    keep("train", [texts[i] for i in train_idx[pool]], labels[train_idx[pool]])
    keep("valid", [texts[i] for i in valid_idx], labels[valid_idx], max_valid)
    keep("test", *test, max_test)
    # unlabelled text for LM fine-tuning: the training texts left out of the labelled pool, then
    # the dataset's own unlabelled split (IMDb's 50,000 reviews)
    unlabelled = [texts[i] for i in np.delete(train_idx, pool)]
    if "unsupervised" in spec.splits:
        unlabelled += D.texts_and_labels(D.load(spec, "unsupervised", mirror), spec)[0]
    if unlabelled:
        keep("unlabelled", unlabelled, None, max_unlabelled)
    return splits


def prepare(dataset, out_dir, mirror=None, valid_frac=0.1, split_seed=42, max_vocab=60000, min_freq=3, workers=2,
            progress=None, file=None, text_column=None, label_column=None, test_file=None, **caps):
    """Load, split, tokenize and numericalize one dataset into `out_dir`; returns its info dict.

    caps: max_train, max_valid, max_test, max_unlabelled, max_words, repartition_test (see read_splits).
    file: the user's own .csv or .parquet dataset, named `dataset`, with columns text_column (default text) and
    label_column (default label), and optionally a test_file (else test is carved from file).
    The vocabulary is built from the training pool and the unlabelled texts.
    """
    own = {k: str(v) if isinstance(v, Path) else v for k, v in (("file", file), ("text_column", text_column),
                                                                 ("label_column", label_column), ("test_file", test_file))
           if v is not None}
    check_prepare({"valid_frac": valid_frac, "split_seed": split_seed, "max_vocab": max_vocab, "min_freq": min_freq,
                   "workers": workers, **own, **caps})
    if own and not file:
        raise ConfigError(f"prepare: {', '.join(own)} describe a dataset read from a file; set file too "
                          "(--dataset path/to/file.csv on the command line)")
    spec = D.file_dataset(dataset, **own) if file else D.spec(dataset)
    info = {"dataset": dataset, "classes": list(spec.classes), "skipped_empty": {}}
    if file:
        info["source"] = {**spec.files, "text_column": spec.text[0], "label_column": spec.label}
    inputs = list(spec.files.values()) if file else [D.mirror_dir(mirror)]
    with atomic_dir(out_dir, "prepare", PREPARED_LAYOUT, inputs) as tmp:
        with measured(info):
            splits = read_splits(spec, info, mirror, valid_frac, split_seed, **caps)
            tokens = {name: tokenize_texts(texts, workers=workers, progress=progress) for name, (texts, _) in splits.items()}
            vocab = Vocab.build(tokens["train"] + tokens.get("unlabelled", []), max_size=max_vocab, min_freq=min_freq)
            for name, (_, labels) in splits.items():
                docs = numericalize(tokens[name], vocab, labels)
                docs.save(tmp / f"{name}.npz")
                info[name] = {"docs": len(docs), "tokens": int(docs.n_tokens), "unk_rate": float(np.mean(docs.ids == 0))}
                if labels is not None:
                    info[name]["per_class"] = np.bincount(labels, minlength=len(info["classes"])).tolist()
            info["vocab_size"] = len(vocab)
            info["vocab"] = vocab_fingerprint(vocab.itos)
            write_json(tmp / "vocab.json", vocab.itos)
        write_json(tmp / "info.json", info)
    return info


def prepared_dir(data_dir):
    """A prepared dataset folder that exists (a missing one names the step that makes it)."""
    if not Path(data_dir).is_dir():
        raise D.DataError(f"{data_dir} does not exist; run the prepare step for {Path(data_dir).name} first")
    return Path(data_dir)


def vocab_fingerprint(itos):
    """Size and hash of a vocabulary: prepared data records the one its documents were numericalized with."""
    return {"size": len(itos), "sha256": hashlib.sha256(json.dumps(list(itos)).encode()).hexdigest()}


def load_info(data_dir):
    """info.json of a prepared folder, with its class names checked."""
    path = prepared_dir(data_dir) / "info.json"
    info = read_json(path)
    if not isinstance(info, dict) or not isinstance(info.get("classes"), list):
        raise D.DataError(f"{path} has no list of classes; run the prepare step for {Path(data_dir).name} again")
    return info


def load_prepared(data_dir, split, direction="fwd"):
    """The documents of one split; token ids beyond the folder's vocabulary are an error naming the file."""
    path = prepared_dir(data_dir) / f"{split}.npz"
    if not path.exists():
        raise D.DataError(f"{path} does not exist; run the prepare step for {Path(data_dir).name} first")
    docs = Docs.load(path)
    size = len(load_vocab(data_dir))
    if len(docs.ids) and docs.ids.max() >= size:
        raise D.DataError(f"{path} holds token id {docs.ids.max()}, beyond the {size} tokens of "
                          f"{Path(data_dir) / 'vocab.json'}; run the prepare step for {Path(data_dir).name} again")
    return docs.reversed() if direction == "bwd" else docs


def load_vocab(data_dir):
    """vocab.json of a prepared folder: a list of tokens, and (where info.json records it) the very vocabulary its
    documents were numericalized with."""
    path = prepared_dir(data_dir) / "vocab.json"
    itos = read_json(path)
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos) or itos[:len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
        raise D.DataError(f"{path} is not a vocabulary (a list of tokens starting with the special tokens); run the "
                          f"prepare step for {Path(data_dir).name} again")
    recorded = load_info(data_dir).get("vocab") if path.with_name("info.json").exists() else None
    if recorded and recorded != vocab_fingerprint(itos):
        raise D.DataError(f"{path} ({len(itos)} tokens) is not the vocabulary the documents of {Path(data_dir)} were "
                          f"made with ({recorded['size']} tokens, another hash); restore it or run the prepare step again")
    return Vocab(itos)


# ---------------------------------------------------------------- language models


def resume_path(out_dir):
    """Where an interrupted run of the step writing `out_dir` keeps its resumable state, unless
    the caller names another place (the pipeline keeps them in .resume/, outside DVC's outputs)."""
    return Path(out_dir).with_name(Path(out_dir).name + ".resume.pt")


def compute(history, model_cfg, vocab_size):
    """The tokens a language model trained on and the matmul FLOPs that cost: 3 x lm_flops a token."""
    tokens = history[-1]["tokens"] if history else 0
    return {"train_tokens_seen": tokens,
            "train_flops": 3 * lm_flops(model_cfg.emb_size, model_cfg.hidden_size, vocab_size, model_cfg.n_layers) * tokens}


def pretrain(corpus_dir, out_dir, model_cfg, lm_cfg, direction="fwd", seed=0, device=None, progress=None, resume=None):
    """Train a general-domain language model from scratch on a prepared corpus (under torchrun:
    data-parallel over the processes, rank 0 writing the outputs)."""
    device = distributed.setup(device)
    vocab = load_vocab(corpus_dir)
    record = {"direction": direction, "seed": seed, "processes": distributed.world_size()}
    with output_dir(out_dir, "pretrain", [corpus_dir]) as tmp:
        with measured(record):
            torch.manual_seed(seed)
            model = LanguageModel(len(vocab), model_cfg, drop_mult=lm_cfg.drop_mult)
            train, valid = load_prepared(corpus_dir, "train", direction), load_prepared(corpus_dir, "valid", direction)
            record.update(describe(lm_cfg.precision, device))  # the inputs are checked: now the hardware decides
            log, end = dvclive_logger(tmp / "dvclive")
            record["history"] = train_lm(model, train, valid, lm_cfg, seed, device, None,
                                         resume or resume_path(out_dir), progress, on_step=log)
            end()
            record["valid_ppl"] = record["history"][-1].get("valid_ppl")
            record.update(compute(record["history"], model_cfg, len(vocab)))
            save_model(tmp, model, vocab.itos, meta={"direction": direction, "lm_config": asdict(lm_cfg)})
        write_json(tmp / "metrics.json", record)
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
                budget=0, balanced=True, seed=0, device=None, progress=None, resume=None):
    """Fine-tune a language model on a target dataset's text.

    The pretrained model's vocabulary is mapped onto the dataset's (new tokens start at the mean
    embedding). Without `pretrained_dir` the model starts from random weights of `model_cfg`.
    With lm_cfg None the mapped model is saved unchanged ("no LM fine-tuning"). Runs
    data-parallel under torchrun like `pretrain`.
    """
    device = distributed.setup(device)
    vocab = load_vocab(data_dir)
    record = {"direction": direction, "seed": seed, "text": text, "budget": budget,
              "pretrained": str(pretrained_dir) if pretrained_dir else None, "processes": distributed.world_size()}
    with output_dir(out_dir, "finetune-lm", [data_dir, pretrained_dir]) as tmp:
        with measured(record):
            torch.manual_seed(seed)
            if pretrained_dir:
                obj = read(pretrained_dir)
                if obj["meta"].get("direction", "fwd") != direction:
                    raise ValueError(f"{pretrained_dir} is a {obj['meta'].get('direction')} model; this step needs {direction}")
                model_cfg = model_config(obj)
            drop_mult = lm_cfg.drop_mult if lm_cfg else 1.0
            model = LanguageModel(len(vocab), model_cfg, drop_mult=drop_mult)
            if pretrained_dir:
                load_weights(model, transfer_vocab(obj["state_dict"], obj["vocab"], vocab.itos), obj["path"])
            valid = load_prepared(data_dir, "valid", direction)
            docs = lm_text(data_dir, text, seed, budget, balanced, direction) if lm_cfg is not None else None
            record.update(describe(lm_cfg.precision if lm_cfg else "auto", device))
            if lm_cfg is not None:
                log, end = dvclive_logger(tmp / "dvclive")
                record["train_tokens"] = int(docs.n_tokens)
                record["history"] = train_lm(model, docs, valid, lm_cfg, seed, device, None,
                                             resume or resume_path(out_dir), progress, on_step=log)
                end()
                record["valid_ppl"] = record["history"][-1]["valid_ppl"]
                record.update(compute(record["history"], model_cfg, len(vocab)))
            else:
                record["valid_ppl"] = float(np.exp(lm_loss(model.to(device), valid, LMConfig(precision=record["precision"]), device)))
            save_model(tmp, model, vocab.itos, meta={"direction": direction, "lm_config": asdict(lm_cfg) if lm_cfg else None})
        write_json(tmp / "metrics.json", record)
    return record


# ---------------------------------------------------------------- classifiers


def flatness(history, frac=0.2):
    """Relative fall of the training loss over the last `frac` of epochs (near 0 = flattened)."""
    losses = [h["train_loss"] for h in history]
    k = max(1, int(round(len(losses) * frac)))
    if len(losses) <= k:
        return None
    before = losses[-k - 1]
    return float((before - losses[-1]) / max(abs(before), 1e-8))


def selection_split(labels, chosen, size, seed):
    """(training indices, selection indices) of an early-stopping classifier run.

    The selection split, on which early stopping chooses the epoch, holds `size` labelled examples
    of the pool outside the run's budget `chosen` (stratified, seeded), so that the epoch is never
    chosen on the validation split that scores the run. When the budget leaves too few over (a
    budget of the whole pool), the rest come from `chosen`, and the run does not train on them.
    """
    labels = np.asarray(labels)
    rest = np.setdiff1d(np.arange(len(labels)), chosen)
    if len(rest) >= size:
        return chosen, rest[D.stratified_sample(labels[rest], size, seed, balanced=False)]
    take = chosen[D.stratified_sample(labels[chosen], min(size - len(rest), len(chosen) // 2), seed, balanced=False)]
    return np.setdiff1d(chosen, take), np.sort(np.concatenate([rest, take]))


def train_clf(data_dir, out_dir, clf_cfg, lm_dir=None, model_cfg=None, direction="fwd", budget=0, balanced=True,
              seed=0, keep_model=True, device=None, progress=None, resume=None, own_lm=None):
    """Train a classifier on `budget` labelled examples (0 = the whole pool) and report its
    validation error. Early stopping (clf_cfg.early_stop) chooses the epoch on `selection_split`,
    never on the validation split. The encoder comes from the fine-tuned language model in `lm_dir`, or from
    random weights of `model_cfg` when lm_dir is None (training from scratch). `own_lm`: the record of
    a language model fine-tuned for this run alone (the supervised variant); its times are kept."""
    device = device or default_device()
    info = load_info(data_dir)
    vocab = load_vocab(data_dir)
    record = {"direction": direction, "seed": seed, "budget": budget, "lm": str(lm_dir) if lm_dir else None}
    if own_lm:
        record["own_lm"] = {k: own_lm[k] for k in ("started", "finished", "wall_s", "peak_mem_mb", "valid_ppl")}
    with atomic_dir(out_dir, "train-clf", MODEL_LAYOUT, [data_dir, lm_dir]) as tmp:
        with measured(record):
            pool = load_prepared(data_dir, "train", direction)
            D.check_classes(pool.labels, info["classes"], f"{data_dir}/train.npz")
            chosen = D.stratified_sample(pool.labels, budget, seed, balanced, info["classes"]) if budget else np.arange(len(pool))
            valid, select = load_prepared(data_dir, "valid", direction), None
            if clf_cfg.early_stop:
                chosen, picked = selection_split(pool.labels, chosen, len(valid), seed)
                select = pool.subset(picked)
            train = pool.subset(chosen)
            if lm_dir:
                obj = read(lm_dir)
                check_vocab(obj, vocab.itos)
                if obj["meta"].get("direction", "fwd") != direction:
                    raise ValueError(f"{lm_dir} is a {obj['meta'].get('direction')} model; this classifier needs {direction}")
                model_cfg = model_config(obj)
            torch.manual_seed(seed)
            model = Classifier(len(vocab), len(info["classes"]), model_cfg, clf_cfg.bptt, clf_cfg.max_len,
                               drop_mult=clf_cfg.drop_mult)
            if lm_dir:
                load_weights(model, obj["state_dict"], obj["path"], prefix="encoder.")
            record.update(describe(clf_cfg.precision, device))
            log, end = dvclive_logger(tmp / "dvclive")
            check, key = (valid, "valid_error") if select is None else (select, "select_error")
            history = train_classifier(model, train, check, clf_cfg, seed, device, per_epoch(log), resume or resume_path(out_dir),
                                       progress, key)
            end()
            probs = predict_probs(model, valid, clf_cfg.batch_size, device, clf_cfg.precision)
            record.update(
                n_train=len(train), n_select=0 if select is None else len(select), valid_error=error_rate(probs, valid.labels),
                valid_confusion=confusion(probs, valid.labels, len(info["classes"])).tolist(),
                train_loss=history[-1]["train_loss"], loss_flatness=flatness(history),
                best_epoch=min(history, key=lambda h: h.get(key, np.inf))["epoch"] if clf_cfg.early_stop else len(history),
                history=history,
            )
            if keep_model:
                save_model(tmp, model, vocab.itos, info["classes"], meta={"direction": direction, "dataset": info["dataset"]})
        write_json(tmp / "metrics.json", record)
    return record


def evaluate(data_dir, model_dirs, out_path, device=None, batch_size=64, precision="auto"):
    """Test error of each classifier and of the ensemble that averages their probabilities."""
    device = device or default_device()
    check_result_file(out_path, "evaluate")
    result = {"step": "evaluate", "models": {}}
    with measured(result):
        probs = []
        for name, directory in model_dirs.items():
            model, obj = load_classifier(directory, device)
            direction = obj["meta"].get("direction", "fwd")
            check_vocab(obj, load_vocab(data_dir).itos)
            test = load_prepared(data_dir, "test", direction)
            result.update(describe(precision, device))
            p = predict_probs(model, test, batch_size, device, precision)
            probs.append(p)
            result["models"][name] = {"test_error": error_rate(p, test.labels), "direction": direction}
        if len(probs) > 1:
            result["ensemble_test_error"] = error_rate(np.mean(probs, axis=0), test.labels)
        result["n_test"] = len(test)
    write_json(out_path, result)
    return result


def load_classifier(directory, device):
    model, obj = load_model(directory, device)
    if obj["kind"] != "classifier":
        raise CheckpointError(f"{directory} holds a language model, not a classifier; pass a folder written by "
                              "train-clf (a classifier whose model was kept)")
    return model, obj
