"""Speed and memory of this implementation beside baselines measured in the same run.

    python benchmarks/run.py            # writes benchmarks/results.json and benchmarks/results.md
    python benchmarks/run.py --calibrate  # this machine's calibration figure, in about a minute
    python benchmarks/run.py --render     # rewrite results.md from results.json

Baselines: (a) a plain torch model of the same shapes (nn.Embedding, stacked nn.LSTM, tied
Linear, F.cross_entropy, no regularisation) and (b) fastai 2.8.12's AWD_LSTM, classifier,
tokenizer and predict loop (`pip install -e '.[bench]'`; without fastai its rows are skipped).
Every case runs in a fresh subprocess, so its peak memory is its own; rates are medians over
repeated steps after warm-up. Nothing here is asserted by the tests: the figures are read, not
checked, because this machine's timings are noisy.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("ULMFIT_DATA") or ROOT.parent / "shared" / "data")
CONFIGS = {  # name: (emb, hidden, vocab, batch, bptt, warm-up steps, timed steps)
    "cpu-profile": (128, 192, 10000, 32, 70, 3, 10),
    "fastai-reference": (200, 512, 20000, 64, 70, 2, 8),
    "paper": (400, 1150, 60000, 64, 70, 1, 3),
}
RESULT = "BENCHMARK RESULT "  # marks the case's JSON line in its stdout (fastai may print progress bars)
DROPOUTS = dict(output_p=0.4, hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)  # the paper's


def imdb_texts(split="train", n=None):
    import pyarrow.parquet as pq

    texts = pq.read_table(MIRROR / "imdb" / f"{split}.parquet").column("text").to_pylist()
    return texts if n is None else texts[:: max(1, len(texts) // n)][:n]


def imdb_docs(vocab_size, n=3000):
    """Real IMDb reviews tokenized and numericalized with a vocabulary of `vocab_size`."""
    from ulmfit.text import Vocab, numericalize, tokenize_texts

    texts = imdb_texts("train", n)
    labels = np.array([0] * (len(texts) // 2) + [1] * (len(texts) - len(texts) // 2))
    tokens = tokenize_texts(texts, workers=2, progress=False)
    vocab = Vocab.build(tokens, max_size=vocab_size, min_freq=1)
    return numericalize(tokens, vocab, labels), vocab


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_rate(step, warmup, timed, amount):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(timed):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return amount / float(np.median(times))


# ---------------------------------------------------------------- language models


def plain_lm(vocab, emb, hidden):
    import torch
    from torch import nn

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(vocab, emb)
            sizes = [emb, hidden, hidden, emb]
            self.rnns = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True) for i in range(3))
            self.decoder = nn.Linear(emb, vocab)
            self.decoder.weight = self.embedding.weight

        def loss(self, x, y):
            h = self.embedding(x)
            for rnn in self.rnns:
                h, _ = rnn(h)
            logits = self.decoder(h)
            return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))

    return Plain()


def lm_batches(vocab, bs, bptt):
    """(input, target) batches of real IMDb text, consecutive slices of one token stream."""
    import torch

    docs, _ = imdb_docs(vocab)
    stream = torch.from_numpy(docs.ids.astype(np.int64))
    return [(stream[i : i + bs * bptt].view(bs, bptt), stream[i + 1 : i + 1 + bs * bptt].view(bs, bptt))
            for i in range(0, len(stream) - bs * bptt - 1, bs * bptt)]


def lm_case(config, impl, train=True):
    import torch

    from ulmfit.awd_lstm import LanguageModel, ar_tar
    from ulmfit.config import ModelConfig
    from ulmfit.optim import AdamW

    emb, hidden, vocab, bs, bptt, warmup, timed = CONFIGS[config]
    torch.manual_seed(0)
    batches = lm_batches(vocab, bs, bptt)
    bf16 = impl.endswith("bf16")
    state = {"i": 0, "losses": []}
    if impl.startswith("fastai"):
        return fastai_lm_case(config, batches, train)
    if impl.startswith("plain"):
        model = plain_lm(vocab, emb, hidden)
        loss_fn = model.loss
    else:
        drop = DROPOUTS if "noreg" not in impl else {k: 0.0 for k in DROPOUTS}
        model = LanguageModel(vocab, ModelConfig(emb_size=emb, hidden_size=hidden, **drop))
        alpha, beta = (0.0, 0.0) if "noreg" in impl else (2.0, 1.0)

        def loss_fn(x, y):
            loss, raw, dropped, _ = model.loss(x, y)
            return loss + ar_tar(raw, dropped, alpha, beta)
    opt = AdamW([{"params": list(model.parameters()), "lr": 1e-3}], betas=(0.7, 0.99), weight_decay=0.01)
    model.train(train)

    def step():
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), torch.set_grad_enabled(train):
            loss = loss_fn(x, y)
        if train:
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            opt.step()
        state["losses"].append(loss.item())

    rate = median_rate(step, warmup, timed, bs * bptt)
    return {"tokens_per_s": rate, "peak_mem_mb": peak_mb()}


def lm_loss_check(steps=40):
    """Loss after a fixed number of steps, bf16 against fp32, same weights and batches."""
    import torch

    from ulmfit.awd_lstm import LanguageModel
    from ulmfit.config import ModelConfig
    from ulmfit.optim import AdamW

    emb, hidden, vocab, bs, bptt, _, _ = CONFIGS["cpu-profile"]
    batches = lm_batches(vocab, bs, bptt)
    out = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = LanguageModel(vocab, ModelConfig(emb_size=emb, hidden_size=hidden, **DROPOUTS))
        opt = AdamW([{"params": list(model.parameters()), "lr": 3e-3}], betas=(0.7, 0.99), weight_decay=0.01)
        losses = []
        for x, y in batches[:steps]:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = model.loss(x, y)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        out[precision] = float(np.mean(losses[-5:]))
    out["relative_difference"] = abs(out["bf16"] - out["fp32"]) / out["fp32"]
    out["steps"] = steps
    return out


def fastai_config(emb, hidden, classifier=False):
    from fastai.text.all import awd_lstm_clas_config, awd_lstm_lm_config

    cfg = dict(awd_lstm_clas_config if classifier else awd_lstm_lm_config)
    cfg.update(emb_sz=emb, n_hid=hidden, n_layers=3, **DROPOUTS)
    return cfg


def stop_after(n, times, sizes):
    """A fastai callback that times each batch and cancels the fit after `n` batches."""
    from fastai.callback.core import Callback, CancelFitException

    class StopAfter(Callback):
        def before_batch(self):
            self.start = time.perf_counter()

        def after_batch(self):
            times.append(time.perf_counter() - self.start)
            sizes.append(len(self.learn.yb[0]))
            if len(times) >= n:
                raise CancelFitException()

    return StopAfter()


def fastai_lm_case(config, batches, train):
    import torch
    from fastai.text.all import AWD_LSTM, DataLoaders, LMDataLoader, TensorText, language_model_learner

    emb, hidden, vocab, bs, bptt, warmup, timed = CONFIGS[config]
    stream = torch.cat([x.reshape(-1) for x, _ in batches])
    items = [TensorText(stream[i : i + 5000]) for i in range(0, len(stream), 5000)]
    dl = LMDataLoader(items, bs=bs, seq_len=bptt, shuffle=False)
    dls = DataLoaders(dl, dl)
    dls.vocab = [f"w{i}" for i in range(vocab)]
    learn = language_model_learner(dls, AWD_LSTM, config=fastai_config(emb, hidden), pretrained=False, drop_mult=1.0)
    times, sizes = [], []
    if train:
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 1e-3, cbs=stop_after(warmup + timed, times, sizes))
    else:
        model = learn.model.eval()
        with torch.no_grad():
            for x, _ in batches[: warmup + timed]:
                model.reset()
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
    return {"tokens_per_s": bs * bptt / float(np.median(times[warmup:])), "peak_mem_mb": peak_mb()}


# ---------------------------------------------------------------- classifiers

EPOCHS = 3  # timed epochs of 1,024 reviews; the rate is over all of them


def clf_case(impl, n_docs=1024, max_len=140):
    import torch

    from ulmfit.awd_lstm import Classifier
    from ulmfit.config import ClfConfig, ModelConfig
    from ulmfit.train import train_classifier

    emb, hidden, vocab, *_ = CONFIGS["cpu-profile"]
    docs, itos = imdb_docs(vocab, n_docs)
    if impl == "fastai_fp32":
        return fastai_clf_case(docs, itos, emb, hidden, max_len)
    torch.manual_seed(0)
    model = Classifier(vocab, 2, ModelConfig(emb_size=emb, hidden_size=hidden, **DROPOUTS), 70, max_len)
    cfg = ClfConfig(epochs=1, unfreeze="full", max_len=max_len, precision=impl.split("_")[1])
    train_classifier(model, docs.subset(np.arange(128)), None, cfg, progress=False)  # warm-up
    start = time.perf_counter()
    for _ in range(EPOCHS):
        train_classifier(model, docs, None, cfg, progress=False)
    return {"docs_per_s": EPOCHS * len(docs) / (time.perf_counter() - start), "mean_tokens": float(docs.lengths.mean()),
            "peak_mem_mb": peak_mb()}


def fastai_clf_case(docs, itos, emb, hidden, max_len):
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
    dls = DataLoaders(dl, dl)
    dls.vocab, dls.c = list(itos.itos), 2
    learn = text_classifier_learner(dls, AWD_LSTM, seq_len=70, config=fastai_config(emb, hidden, classifier=True), pretrained=False,
                                    drop_mult=1.0, n_out=2, max_len=max_len, loss_func=CrossEntropyLossFlat())
    times, sizes = [], []
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3, cbs=stop_after(2, [], []))  # warm-up
        learn.fit(EPOCHS, 1e-3, cbs=stop_after(EPOCHS * len(dl), times, sizes))
    return {"docs_per_s": sum(sizes) / sum(times), "mean_tokens": float(docs.lengths.mean()), "peak_mem_mb": peak_mb()}


# ---------------------------------------------------------------- tokenization and prediction


def tokenize_case(impl):
    """Tokenize all 100,000 IMDb texts, build a vocabulary (60k, min_freq 3) and numericalize them."""
    texts = imdb_texts("train") + imdb_texts("test") + imdb_texts("unsupervised")
    start = time.perf_counter()
    if impl == "fastai":
        from fastai.text.all import Numericalize
        from fastai.text.core import tokenize_texts

        tokens = [list(t) for t in tokenize_texts(texts, n_workers=2)]
        split = time.perf_counter()
        num = Numericalize(min_freq=3, max_vocab=60000)
        num.setups(tokens)
        ids = [num(t) for t in tokens]
    else:
        from ulmfit.text import Vocab, numericalize, tokenize_texts

        tokens = tokenize_texts(texts, workers=2, progress=False)
        split = time.perf_counter()
        ids = numericalize(tokens, Vocab.build(tokens, max_size=60000, min_freq=3))
    seconds = time.perf_counter() - start
    assert len(ids) == len(texts)
    import pickle

    with open(ROOT / "benchmarks" / f".tokens_{impl}.pkl", "wb") as f:  # compared by compare_tokens()
        pickle.dump(tokens, f)
    return {"docs_per_s": len(texts) / seconds, "docs": len(texts), "seconds": seconds,
            "tokenize_seconds": split - start, "numericalize_seconds": seconds - (split - start), "peak_mem_mb": peak_mb()}


def compare_tokens():
    import pickle

    paths = [ROOT / "benchmarks" / f".tokens_{impl}.pkl" for impl in ("ours", "fastai")]
    if not all(p.exists() for p in paths):
        return None
    ours, theirs = (pickle.loads(p.read_bytes()) for p in paths)
    for p in paths:
        p.unlink()
    differing = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    kinds = {}
    for i in differing[:200]:
        a, b = ours[i], theirs[i]
        j = next(k for k in range(min(len(a), len(b)) + 1) if k == min(len(a), len(b)) or a[k] != b[k])
        kinds.setdefault(f"ours {a[j:j + 3]} / fastai {b[j:j + 3]}", i)
    return {"documents": len(ours), "identical": len(ours) - len(differing),
            "identical_fraction": 1 - len(differing) / len(ours), "differences": kinds}


def predict_case(impl, n=1000):
    import torch

    from ulmfit.awd_lstm import Classifier
    from ulmfit.checkpoint import save_model
    from ulmfit.config import ModelConfig

    emb, hidden, vocab, *_ = CONFIGS["cpu-profile"]
    texts = imdb_texts("test", n)
    if impl == "fastai":
        return fastai_predict_case(texts, emb, hidden)
    from ulmfit import steps

    _, itos = imdb_docs(vocab)
    torch.manual_seed(0)
    directory = ROOT / "benchmarks" / ".predict_model"
    save_model(directory, Classifier(vocab, 2, ModelConfig(emb_size=emb, hidden_size=hidden), 70, 1400), itos.itos,
               ["neg", "pos"], meta={"direction": "fwd"})
    steps.predict(directory, texts[:20], device="cpu")  # warm-up
    start = time.perf_counter()
    steps.predict(directory, texts, device="cpu")
    seconds = time.perf_counter() - start
    import shutil

    shutil.rmtree(directory)
    return {"docs_per_s": n / seconds, "seconds": seconds, "peak_mem_mb": peak_mb()}


def fastai_predict_case(texts, emb, hidden):
    import pandas as pd
    from fastai.text.all import AWD_LSTM, TextDataLoaders, text_classifier_learner

    train = imdb_texts("train", 400)
    df = pd.DataFrame({"text": train, "label": [0] * 200 + [1] * 200})
    dls = TextDataLoaders.from_df(df, text_col="text", label_col="label", valid_pct=0.1, seq_len=70, bs=64)
    learn = text_classifier_learner(dls, AWD_LSTM, config=fastai_config(emb, hidden, classifier=True), pretrained=False)
    for text in texts[:20]:  # warm-up
        learn.predict(text)
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        for text in texts:
            learn.predict(text)
    seconds = time.perf_counter() - start
    return {"docs_per_s": len(texts) / seconds, "seconds": seconds, "peak_mem_mb": peak_mb()}


CASES = {
    "lm_train": lambda config, impl: lm_case(config, impl, train=True),
    "lm_infer": lambda config, impl: lm_case(config, impl, train=False),
    "lm_loss_check": lambda config, impl: lm_loss_check(),
    "clf_train": lambda config, impl: clf_case(impl),
    "tokenize": lambda config, impl: tokenize_case(impl),
    "predict": lambda config, impl: predict_case(impl),
}
PLAN = (
    [("lm_train", c, i) for c in CONFIGS for i in ("ours_bf16", "ours_fp32", "ours_noreg_bf16", "plain_bf16", "plain_fp32", "fastai_fp32")]
    + [("lm_infer", c, i) for c in ("cpu-profile", "fastai-reference") for i in ("ours_bf16", "ours_fp32", "plain_fp32", "fastai_fp32")]
    + [("lm_loss_check", "cpu-profile", "ours")]
    + [("clf_train", "cpu-profile", i) for i in ("ours_bf16", "ours_fp32", "fastai_fp32")]
    + [("tokenize", "-", i) for i in ("ours", "fastai")]
    + [("predict", "cpu-profile", i) for i in ("ours", "fastai")]
)


def has_fastai():
    try:
        import fastai.text.all  # noqa: F401
    except Exception:
        return False
    return True


def run_all(out):
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "torch": __import__("torch").__version__, "fastai": None, "cases": []}
    fastai_ok = has_fastai()
    if fastai_ok:
        import fastai

        results["fastai"] = fastai.__version__
    for case, config, impl in PLAN:
        if impl.startswith("fastai") and not fastai_ok:
            results["cases"].append({"case": case, "config": config, "impl": impl,
                                     "skipped": "fastai is not installed (pip install -e '.[bench]')"})
            continue
        print(f"{case} {config} {impl} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--case", case, "--config", config, "--impl", impl],
                              capture_output=True, text=True)
        row = {"case": case, "config": config, "impl": impl}
        if proc.returncode:
            row["error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        else:
            row.update(json.loads(proc.stdout.rsplit(RESULT, 1)[1]) if RESULT in proc.stdout else {"error": "no result"})
        print("   ", row, flush=True)
        results["cases"].append(row)
    results["tokens_compared"] = compare_tokens()
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))


def find(results, case, config, impl, key):
    for row in results["cases"]:
        if (row["case"], row["config"], row["impl"]) == (case, config, impl):
            return row.get(key)
    return None


def ratio(a, b):
    return "–" if not a or not b else f"{a / b:.2f}x"


def markdown(r):
    lines = ["# Benchmarks", "", f"Machine: {r['machine']}; torch {r['torch']}; fastai {r['fastai'] or 'not installed'}. "
             "Produced by `python benchmarks/run.py`. Rates are medians over repeated steps after warm-up; each case ran "
             "in its own process (peak memory is that process's). Ratios compare rows measured in this same run.", ""]
    lines += ["## Language-model training (tokens/s)", "",
              "Headline ratios compare the same dtype: ours fp32 / fastai fp32 and ours bf16 / plain bf16. The last ratio, "
              "ours bf16 / fastai fp32, is what each user gets by default on a CPU (fastai's MixedPrecision autocasts only "
              "on CUDA), not a measure of the engine.", "",
              "| Config | ours bf16 | ours fp32 | ours bf16 without regularisation | plain bf16 | plain fp32 | fastai fp32 "
              "| **ours fp32 / fastai fp32** | **ours bf16 / plain bf16** | ours bf16 / fastai fp32 (defaults) "
              "| regularisation overhead (bf16) | peak MB (ours bf16) |",
              "|---|" + "---:|" * 11]
    for c in CONFIGS:
        g = {i: find(r, "lm_train", c, i, "tokens_per_s") for i in ("ours_bf16", "ours_fp32", "ours_noreg_bf16", "plain_bf16",
                                                                  "plain_fp32", "fastai_fp32")}
        over = "–" if not (g["ours_bf16"] and g["ours_noreg_bf16"]) else f"{(g['ours_noreg_bf16'] / g['ours_bf16'] - 1) * 100:+.1f}%"
        lines.append(f"| {c} {CONFIGS[c][:3]} | " + " | ".join(f"{v:,.0f}" if v else "–" for v in g.values())
                     + f" | {ratio(g['ours_fp32'], g['fastai_fp32'])} | {ratio(g['ours_bf16'], g['plain_bf16'])} | "
                     f"{ratio(g['ours_bf16'], g['fastai_fp32'])} | {over} | "
                     f"{find(r, 'lm_train', c, 'ours_bf16', 'peak_mem_mb') or 0:,.0f} |")
    check = find(r, "lm_loss_check", "cpu-profile", "ours", "relative_difference")
    if check is not None:
        row = next(x for x in r["cases"] if x["case"] == "lm_loss_check")
        lines += ["", f"Loss after {row['steps']} steps from the same weights and batches: fp32 {row['fp32']:.4f}, "
                      f"bf16 {row['bf16']:.4f} (relative difference {check * 100:.2f}%)."]
    lines += ["", "## Language-model inference (tokens/s)", "", "| Config | ours bf16 | ours fp32 | plain fp32 | fastai fp32 "
              "| **ours fp32 / fastai fp32** | ours fp32 / plain fp32 | ours bf16 / fastai fp32 (defaults) |", "|---|" + "---:|" * 7]
    for c in ("cpu-profile", "fastai-reference"):
        g = {i: find(r, "lm_infer", c, i, "tokens_per_s") for i in ("ours_bf16", "ours_fp32", "plain_fp32", "fastai_fp32")}
        lines.append(f"| {c} | " + " | ".join(f"{v:,.0f}" if v else "–" for v in g.values())
                     + f" | {ratio(g['ours_fp32'], g['fastai_fp32'])} | {ratio(g['ours_fp32'], g['plain_fp32'])} | "
                     f"{ratio(g['ours_bf16'], g['fastai_fp32'])} |")
    g = {i: find(r, "clf_train", "cpu-profile", i, "docs_per_s") for i in ("ours_bf16", "ours_fp32", "fastai_fp32")}
    lines += ["", "## Classifier training on IMDb (documents/s)", "",
              f"Real reviews (mean {find(r, 'clf_train', 'cpu-profile', 'ours_bf16', 'mean_tokens') or 0:.0f} tokens), "
              "CPU-profile model, batch 64, BPT3C chunks of 70, gradients and pooling on the last 140 tokens (fastai keeps whole chunks, so a multiple of 70), every layer trained; "
              f"{EPOCHS} timed epochs of 1,024 reviews after a warm-up (fastai: its batches' own time, without its "
              "data loading between batches).", "",
              "| ours bf16 | ours fp32 | fastai fp32 | **ours fp32 / fastai fp32** | ours bf16 / fastai fp32 (defaults) |",
              "|---:|---:|---:|---:|---:|",
              "| " + " | ".join(f"{v:,.0f}" if v else "–" for v in g.values())
              + f" | {ratio(g['ours_fp32'], g['fastai_fp32'])} | {ratio(g['ours_bf16'], g['fastai_fp32'])} |"]
    g = {i: find(r, "tokenize", "-", i, "docs_per_s") for i in ("ours", "fastai")}
    t = r.get("tokens_compared") or {}
    secs = {i: (find(r, "tokenize", "-", i, "tokenize_seconds"), find(r, "tokenize", "-", i, "numericalize_seconds"))
            for i in ("ours", "fastai")}
    split = " / ".join(f"{i} {a:.0f} s + {b:.0f} s" for i, (a, b) in secs.items() if a is not None)
    lines += ["", "## Tokenization + numericalization: all 100,000 IMDb texts (documents/s, 2 workers)", "",
              f"Vocabulary of at most 60,000 tokens with min_freq 3, as the paper's. Tokenize + numericalize: {split}.", "",
              "| ours | fastai (spaCy) | ours / fastai | identical documents |", "|---:|---:|---:|---:|",
              "| " + " | ".join(f"{v:,.0f}" if v else "–" for v in g.values()) + f" | {ratio(g['ours'], g['fastai'])} | "
              + (f"{t['identical']:,} / {t['documents']:,} ({t['identical_fraction'] * 100:.3f}%)" if t else "–") + " |"]
    if t and t["differences"]:
        lines += ["", "Kinds of differences (first differing tokens, with one document index):", ""]
        lines += [f"- {k} (document {v})" for k, v in t["differences"].items()]
    g = {i: find(r, "predict", "cpu-profile", i, "docs_per_s") for i in ("ours", "fastai")}
    lines += ["", "## Inference: 1,000 IMDb test reviews from raw text (documents/s)", "",
              "Not like with like: ours predicts in batches of 64 in bf16, fastai's `learn.predict` one text at a time in "
              "fp32; its batched path (`test_dl` + `get_preds`) is not measured yet.", "",
              "| `ulmfit predict` | fastai `learn.predict` loop | ratio |", "|---:|---:|---:|",
              "| " + " | ".join(f"{v:,.1f}" if v else "–" for v in g.values()) + f" | {ratio(g['ours'], g['fastai'])} |"]
    lines += ["", "## Peak memory (MB) per case", "", "| Case | Config | Implementation | Peak MB |", "|---|---|---|---:|"]
    lines += [f"| {x['case']} | {x['config']} | {x['impl']} | {x.get('peak_mem_mb', 0):,.0f} |" for x in r["cases"] if "peak_mem_mb" in x]
    skipped = [x for x in r["cases"] if "skipped" in x or "error" in x]
    if skipped:
        lines += ["", "Not measured:", ""] + [f"- {x['case']} {x['config']} {x['impl']}: {x.get('skipped') or x.get('error')}" for x in skipped]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case")
    parser.add_argument("--config")
    parser.add_argument("--impl")
    parser.add_argument("--out", default=str(ROOT / "benchmarks"))
    parser.add_argument("--render", action="store_true", help="only rewrite results.md from results.json in --out")
    parser.add_argument("--calibrate", action="store_true", help="only print this machine's calibration figure "
                        "(LM-training tokens/s of the cpu-profile case, about a minute; see calibrate.py)")
    args = parser.parse_args()
    if args.render:
        out = Path(args.out)
        (out / "results.md").write_text(markdown(json.loads((out / "results.json").read_text())))
    elif args.calibrate:
        sys.argv = [sys.argv[0]]
        from calibrate import main as calibrate

        calibrate()
    elif args.case:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        print("\n" + RESULT + json.dumps(CASES[args.case](args.config, args.impl)))
    else:
        run_all(Path(args.out))


if __name__ == "__main__":
    main()
