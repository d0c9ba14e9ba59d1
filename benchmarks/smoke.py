"""The paper profile's tokens/s (`--smoke`): a few hundred LM-training steps and one classifier epoch at a profile's
model, vocabulary, batch, BPTT and precision; writes smoke-<device>.json."""

import json
import os
import time
from pathlib import Path

import numpy as np
from harness import ROOT, auto_precision, imdb_texts, machine, peak_mb, synchronize


def smoke(device="cpu", profile=ROOT / "profiles" / "paper.yaml", lm_steps=300, clf_docs=1000):
    """Tokens/s of `lm_steps` LM-training steps and of one classifier epoch on `clf_docs` IMDb reviews, with the
    profile's model, vocabulary size, batch, BPTT and precision (after a short warm-up of each)."""
    import torch
    import yaml

    from ulmfit.awd_lstm import Classifier, LanguageModel
    from ulmfit.config import ClfConfig, LMConfig, ModelConfig, from_dict
    from ulmfit.text import Vocab, numericalize, tokenize_texts
    from ulmfit.train import train_classifier, train_lm

    params = yaml.safe_load(Path(profile).read_text())
    model_cfg = from_dict(ModelConfig, params.get("model"), "model")
    lm_cfg = from_dict(LMConfig, {**params["pretrain"], "epochs": 1}, "pretrain")
    clf_cfg = from_dict(ClfConfig, {**params["clf"], "epochs": 1, "unfreeze": "full", "patience": 0}, "clf")
    vocab_size = params["data"]["max_vocab"]
    lm_tokens = lm_steps * lm_cfg.batch_size * lm_cfg.bptt
    texts = imdb_texts("unsupervised", lm_tokens // 200 + 100)  # IMDb reviews average about 270 tokens
    clf_texts = imdb_texts("train", clf_docs)
    tokens = tokenize_texts(texts + clf_texts, workers=os.cpu_count() or 1, progress=False)
    vocab = Vocab.build(tokens, max_size=vocab_size, min_freq=1)
    labels = np.arange(len(clf_texts)) % 2  # the rate does not depend on the labels
    lm_docs = numericalize(tokens[: len(texts)], vocab)
    lm_docs = lm_docs.subset(np.arange(int(np.searchsorted(np.cumsum(lm_docs.lengths), lm_tokens)) + 1)[: len(lm_docs)])
    clf_docs = numericalize(tokens[len(texts):], vocab, labels)
    result = {"profile": str(profile), "device": device, "machine": machine(device), "torch": torch.__version__,
              "measured": time.strftime("%Y-%m-%d %H:%M %Z"), "emb_size": model_cfg.emb_size,
              "hidden_size": model_cfg.hidden_size, "vocab_size": vocab_size,
              "precision": auto_precision(device)[0] if lm_cfg.precision == "auto" else lm_cfg.precision}

    torch.manual_seed(0)
    lm = LanguageModel(vocab_size, model_cfg)
    train_lm(lm, lm_docs.subset(np.arange(min(20, len(lm_docs)))), None, lm_cfg, device=device, progress=False)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    history = train_lm(lm, lm_docs, None, lm_cfg, device=device, progress=False)
    synchronize(device)
    seconds = time.perf_counter() - start
    result.update(lm_steps=history[-1]["step"], lm_tokens=int(lm_docs.n_tokens), lm_seconds=seconds,
                  lm_tokens_per_s=lm_docs.n_tokens / seconds)

    clf = Classifier(vocab_size, 2, model_cfg, clf_cfg.bptt, clf_cfg.max_len)
    clf.encoder.load_state_dict(lm.encoder.state_dict())
    train_classifier(clf, clf_docs.subset(np.arange(min(64, len(clf_docs)))), None, clf_cfg, device=device,
                     progress=False)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    train_classifier(clf, clf_docs, None, clf_cfg, device=device, progress=False)
    synchronize(device)
    seconds = time.perf_counter() - start
    result.update(clf_docs=len(clf_docs), clf_tokens=int(clf_docs.n_tokens), clf_seconds=seconds,
                  clf_docs_per_s=len(clf_docs) / seconds, clf_tokens_per_s=clf_docs.n_tokens / seconds,
                  peak_mem_mb=peak_mb(device))
    return result


def report(out, device, profile, lm_steps, clf_docs):
    """smoke() written to out/smoke-<device>.json, and its rates in one line."""
    result = smoke(device, profile, lm_steps, clf_docs)
    Path(out, f"smoke-{device}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"LM training {result['lm_tokens_per_s']:,.0f} tokens/s ({result['lm_steps']} steps), classifier "
          f"{result['clf_tokens_per_s']:,.0f} tokens/s ({result['clf_docs_per_s']:,.1f} docs/s) on {result['machine']}")
