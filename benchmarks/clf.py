"""Classifier training on IMDb (documents/s): ours (ulmfit/train.py's train_classifier, BPT3C) against fastai's
text_classifier_learner, every layer trained."""

import numpy as np
from harness import (
    CONFIGS,
    DROPOUTS,
    TINY_DOCS,
    cell,
    configs_of,
    fastai_config,
    find,
    imdb_docs,
    peak_mb,
    ratio,
    spread,
    step_times,
    stop_after,
)

EPOCHS = 3  # timed epochs of 1,024 reviews: the repetitions of the rate
MAX_LEN = 140  # the last tokens of each review trained through and pooled


def clf_case(config, impl, device="cpu", max_len=MAX_LEN):
    import torch

    from ulmfit.awd_lstm import Classifier
    from ulmfit.config import ClfConfig, ModelConfig
    from ulmfit.train import train_classifier

    emb, hidden, vocab, *_ = CONFIGS[config]
    docs, itos = imdb_docs(vocab, TINY_DOCS if config == "tiny" else 1024)
    if impl == "fastai_fp32":
        return fastai_clf_case(docs, itos, emb, hidden, max_len, device)
    torch.manual_seed(0)
    model = Classifier(vocab, 2, ModelConfig(emb_size=emb, hidden_size=hidden, **DROPOUTS), 70, max_len)
    cfg = ClfConfig(epochs=1, unfreeze="full", max_len=max_len, precision=impl.split("_")[1])
    train_classifier(model, docs.subset(np.arange(min(128, len(docs)))), None, cfg, device=device, progress=False)  # warm-up
    times = step_times(lambda: train_classifier(model, docs, None, cfg, device=device, progress=False), 0, EPOCHS, device)
    return {**spread("docs_per_s", [len(docs)] * EPOCHS, times), "mean_tokens": float(docs.lengths.mean()),
            "peak_mem_mb": peak_mb(device)}


def fastai_clf_case(docs, itos, emb, hidden, max_len, device):
    from functools import partial

    import torch
    from fastai.text.all import (
        AWD_LSTM,
        CrossEntropyLossFlat,
        DataLoaders,
        SortedDL,
        TensorCategory,
        TensorText,
        pad_input_chunk,
        text_classifier_learner,
    )

    items = [(TensorText(torch.from_numpy(docs[i].astype(np.int64))), TensorCategory(int(docs.labels[i])))
             for i in range(len(docs))]
    dl = SortedDL(items, before_batch=partial(pad_input_chunk, seq_len=70), bs=64, shuffle=True)
    dls = DataLoaders(dl, dl, device=torch.device(device))
    dls.vocab, dls.c = list(itos.itos), 2
    learn = text_classifier_learner(dls, AWD_LSTM, seq_len=70, config=fastai_config(emb, hidden, classifier=True), pretrained=False,
                                    drop_mult=1.0, n_out=2, max_len=max_len, loss_func=CrossEntropyLossFlat())
    times, sizes = [], []
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3, cbs=stop_after(2, [], [], device))  # warm-up
        learn.fit(EPOCHS, 1e-3, cbs=stop_after(EPOCHS * len(dl), times, sizes, device))
    epochs = [slice(e * len(dl), (e + 1) * len(dl)) for e in range(EPOCHS)]
    return {**spread("docs_per_s", [sum(sizes[e]) for e in epochs], [sum(times[e]) for e in epochs]),
            "mean_tokens": float(docs.lengths.mean()), "peak_mem_mb": peak_mb(device)}


def clf_section(r):
    c = configs_of(r, "clf_train")[0]
    g = {i: find(r, "clf_train", c, i, "docs_per_s") for i in ("ours_bf16", "ours_fp32", "fastai_fp32")}
    return ["", "## Classifier training on IMDb (documents/s)", "",
            f"Real reviews (mean {find(r, 'clf_train', c, 'ours_bf16', 'mean_tokens') or find(r, 'clf_train', c, 'ours_fp32', 'mean_tokens') or 0:.0f} tokens), "
            f"{c} model, batch 64, BPT3C chunks of 70, gradients and pooling on the last {MAX_LEN} tokens (fastai keeps whole chunks, so a multiple of 70), every layer trained; "
            f"{EPOCHS} timed epochs of 1,024 reviews after a warm-up (fastai: its batches' own time, without its "
            "data loading between batches).", "",
            "| ours bf16 | ours fp32 | fastai fp32 | **ours fp32 / fastai fp32** | ours bf16 / fastai fp32 (defaults) |",
            "|---:|---:|---:|---:|---:|",
            "| " + " | ".join(cell(r, "clf_train", c, i, "docs_per_s") for i in g)
            + f" | {ratio(g['ours_fp32'], g['fastai_fp32'])} | {ratio(g['ours_bf16'], g['fastai_fp32'])} |"]
