"""Inference from raw text (documents/s): `ulmfit predict` against fastai's batched `test_dl` + `get_preds` and its
`learn.predict` called once per text, tokenization included on both sides."""

import os
import shutil

from harness import (
    CONFIGS,
    ROOT,
    TINY_DOCS,
    cell,
    configs_of,
    fastai_config,
    find,
    imdb_docs,
    imdb_texts,
    peak_mb,
    ratio,
    spread,
    step_times,
)


def predict_case(config, impl, device="cpu"):
    """Class probabilities of `n` raw IMDb test reviews, tokenization included, in batches of 64 (ours, fastai's
    `test_dl` + `get_preds`) or one text at a time (fastai's `learn.predict`, impl "fastai")."""
    import torch

    from ulmfit.awd_lstm import Classifier
    from ulmfit.checkpoint import save_model
    from ulmfit.config import ModelConfig

    emb, hidden, vocab, *_ = CONFIGS[config]
    n = TINY_DOCS if config == "tiny" else 1000
    texts = imdb_texts("test", n)
    if impl.startswith("fastai"):
        return fastai_predict_case(texts, emb, hidden, impl == "fastai_get_preds", device)
    from ulmfit import load_classifier

    _, itos = imdb_docs(vocab)
    torch.manual_seed(0)
    directory = ROOT / "benchmarks" / f".predict_model_{os.getpid()}"
    save_model(directory, Classifier(vocab, 2, ModelConfig(emb_size=emb, hidden_size=hidden), 70, 1400), itos.itos,
               ["neg", "pos"], meta={"direction": "fwd"})
    clf = load_classifier(directory, device)
    clf.predict(texts[:20])  # warm-up
    times = step_times(lambda: clf.predict(texts), 0, 3, device)
    shutil.rmtree(directory)
    return {**spread("docs_per_s", [n] * len(times), times), "peak_mem_mb": peak_mb(device)}


def fastai_predict_case(texts, emb, hidden, batched, device):
    import pandas as pd
    import torch
    from fastai.text.all import AWD_LSTM, TextDataLoaders, text_classifier_learner

    train = imdb_texts("train", 400)
    df = pd.DataFrame({"text": train, "label": [0] * 200 + [1] * 200})
    dls = TextDataLoaders.from_df(df, text_col="text", label_col="label", valid_pct=0.1, seq_len=70, bs=64,
                                  device=torch.device(device))
    learn = text_classifier_learner(dls, AWD_LSTM, config=fastai_config(emb, hidden, classifier=True), pretrained=False)

    def run(batch):
        if batched:  # fastai's batched path: tokenization in test_dl, batches of 64 (as ours)
            learn.get_preds(dl=dls.test_dl(batch, bs=64))
        else:
            for text in batch:
                learn.predict(text)

    with learn.no_bar(), learn.no_logging():
        run(texts[:20])  # warm-up
        times = step_times(lambda: run(texts), 0, 3, device)
    return {**spread("docs_per_s", [len(texts)] * len(times), times), "peak_mem_mb": peak_mb(device)}


def predict_section(r):
    c = configs_of(r, "predict")[0]
    g = {i: find(r, "predict", c, i, "docs_per_s") for i in ("ours", "fastai_get_preds", "fastai")}
    return ["", "## Inference: 1,000 IMDb test reviews from raw text (documents/s)", "",
            "Tokenization included on both sides. Ours (`ulmfit predict`) and fastai's batched path (`dls.test_dl(texts)` "
            f"+ `learn.get_preds`) both predict in batches of 64; ours in {r.get('precision_auto', 'bf16')} (`auto`), fastai in fp32 "
            "(its CPU default). "
            "The last columns time fastai's `learn.predict` called once per text.", "",
            "| `ulmfit predict` | fastai `test_dl` + `get_preds` | **ours / get_preds** | fastai `learn.predict` loop "
            "| ours / predict loop |", "|---:|---:|---:|---:|---:|",
            f"| {cell(r, 'predict', c, 'ours', 'docs_per_s')} | {cell(r, 'predict', c, 'fastai_get_preds', 'docs_per_s')} | "
            f"{ratio(g['ours'], g['fastai_get_preds'])} | {cell(r, 'predict', c, 'fastai', 'docs_per_s')} | "
            f"{ratio(g['ours'], g['fastai'])} |"]
