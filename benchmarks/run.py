"""Speed and memory of this implementation beside baselines measured in the same run.

    python benchmarks/run.py            # writes benchmarks/results.json and benchmarks/results.md
    python benchmarks/run.py --calibrate  # this machine's calibration figure, in about a minute
    python benchmarks/run.py --render     # rewrite results.md from results.json
    python benchmarks/run.py --device cuda  # LM, classifier and predict cases on a GPU: results-gpu.json/.md
    python benchmarks/run.py --smoke --device cuda  # paper-profile tokens/s: smoke-cuda.json
    python benchmarks/run.py --case softmax --config paper --impl chunked_bf16  # one case, printed
    python benchmarks/run.py --overhead   # the pipeline's own share of a finished run (reports/metrics.json),
                                          # and each stage script's start-up + import seconds

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
    "tiny": (16, 16, 200, 4, 10, 1, 2),  # the tests' configuration: seconds on a CPU
}
MAIN_CONFIGS = ("cpu-profile", "fastai-reference", "paper")
TINY_DOCS = 32  # reviews of the classifier and predict cases at the tests' config (else 1,024 and 1,000)
GPU_STEPS = (5, 20)  # warm-up and timed steps of every LM case on a GPU, where steps take milliseconds
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


def peak_mb(device="cpu"):
    """The process's peak resident memory on a CPU; the peak of allocated GPU memory on a GPU."""
    if device == "cpu":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


def synchronize(device):
    if device != "cpu":
        __import__("torch").cuda.synchronize()


def step_times(step, warmup, timed, device="cpu"):
    """Seconds of each of `timed` calls of step() after `warmup` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(timed):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def spread(key, amounts, seconds):
    """The median over repetitions of the rate amount / seconds, as `key`, with its min and max and the count."""
    rates = [a / t for a, t in zip(amounts, seconds)]
    return {key: float(np.median(rates)), f"{key}_min": min(rates), f"{key}_max": max(rates), "repetitions": len(rates)}


def steps_for(config, device):
    """(warm-up, timed) steps of an LM case."""
    return CONFIGS[config][5:] if device == "cpu" else GPU_STEPS


# ---------------------------------------------------------------- language models


def lm_batches(vocab, bs, bptt):
    """(input, target) batches of real IMDb text, consecutive slices of one token stream."""
    import torch

    docs, _ = imdb_docs(vocab)
    stream = torch.from_numpy(docs.ids.astype(np.int64))
    return [(stream[i : i + bs * bptt].view(bs, bptt), stream[i + 1 : i + 1 + bs * bptt].view(bs, bptt))
            for i in range(0, len(stream) - bs * bptt - 1, bs * bptt)]


def lm_case(config, impl, train=True, device="cpu"):
    import torch

    from ulmfit.awd_lstm import LanguageModel, ar_tar
    from ulmfit.config import ModelConfig
    from ulmfit.optim import AdamW

    emb, hidden, vocab, bs, bptt, *_ = CONFIGS[config]
    warmup, timed = steps_for(config, device)
    torch.manual_seed(0)
    batches = [(x.to(device), y.to(device)) for x, y in lm_batches(vocab, bs, bptt)]
    bf16 = impl.endswith("bf16")
    state = {"i": 0, "losses": []}
    if impl.startswith("fastai"):
        return fastai_lm_case(config, batches, train, device)
    if impl.startswith("plain"):
        from calibrate import plain_lm

        model = plain_lm(vocab, emb, hidden)
        loss_fn = model.loss
    else:
        drop = DROPOUTS if "noreg" not in impl else {k: 0.0 for k in DROPOUTS}
        model = LanguageModel(vocab, ModelConfig(emb_size=emb, hidden_size=hidden, **drop))
        alpha, beta = (0.0, 0.0) if "noreg" in impl else (2.0, 1.0)

        def loss_fn(x, y):
            loss, raw, dropped, _ = model.loss(x, y)
            return loss + ar_tar(raw, dropped, alpha, beta)
    model.to(device)
    opt = AdamW([{"params": list(model.parameters()), "lr": 1e-3}], betas=(0.7, 0.99), weight_decay=0.01)
    model.train(train)

    def step():
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        opt.zero_grad()  # before the forward pass, as ulmfit/train.py does
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16), torch.set_grad_enabled(train):
            loss = loss_fn(x, y)
        if train:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            opt.step()
        state["losses"].append(loss.item())

    times = step_times(step, warmup, timed, device)
    return {**spread("tokens_per_s", [bs * bptt] * timed, times), "peak_mem_mb": peak_mb(device)}


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


def stop_after(n, times, sizes, device="cpu"):
    """A fastai callback that times each training batch and cancels the fit after `n` of them (validation batches,
    forward only, are neither timed nor counted)."""
    from fastai.callback.core import Callback, CancelFitException

    class StopAfter(Callback):
        def before_batch(self):
            synchronize(device)
            self.start = time.perf_counter()

        def after_batch(self):
            if not self.training:
                return
            synchronize(device)
            times.append(time.perf_counter() - self.start)
            sizes.append(len(self.learn.yb[0]))
            if len(times) >= n:
                raise CancelFitException()

    return StopAfter()


def fastai_lm_case(config, batches, train, device):
    import torch
    from fastai.text.all import AWD_LSTM, DataLoaders, LMDataLoader, TensorText, language_model_learner

    emb, hidden, vocab, bs, bptt, *_ = CONFIGS[config]
    warmup, timed = steps_for(config, device)
    stream = torch.cat([x.reshape(-1).cpu() for x, _ in batches])
    items = [TensorText(stream[i : i + 5000]) for i in range(0, len(stream), 5000)]
    dl = LMDataLoader(items, bs=bs, seq_len=bptt, shuffle=False)
    dls = DataLoaders(dl, dl, device=torch.device(device))
    dls.vocab = [f"w{i}" for i in range(vocab)]
    learn = language_model_learner(dls, AWD_LSTM, config=fastai_config(emb, hidden), pretrained=False, drop_mult=1.0)
    times, sizes = [], []
    if train:
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 1e-3, cbs=stop_after(warmup + timed, times, sizes, device))
    else:
        model = learn.model.eval()
        with torch.no_grad():
            for x, _ in batches[: warmup + timed]:
                model.reset()
                synchronize(device)
                start = time.perf_counter()
                model(x)
                synchronize(device)
                times.append(time.perf_counter() - start)
    times = times[warmup:]
    return {**spread("tokens_per_s", [bs * bptt] * len(times), times), "peak_mem_mb": peak_mb(device)}


# ---------------------------------------------------------------- classifiers

EPOCHS = 3  # timed epochs of 1,024 reviews: the repetitions of the rate


def clf_case(config, impl, device="cpu", max_len=140):
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


# ---------------------------------------------------------------- tokenization and prediction


def tokenize_one(impl, texts):
    """Tokenize `texts`, build a vocabulary (60k, min_freq 3) and numericalize: (tokens, tokenize s, numericalize s)."""
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
    assert len(ids) == len(texts)
    return tokens, split - start, time.perf_counter() - split


def tokenize_case(impl):
    """All 100,000 IMDb texts in three repetitions, each a third of them (every third text) tokenized, given its
    own vocabulary and numericalized."""
    import pickle

    texts = imdb_texts("train") + imdb_texts("test") + imdb_texts("unsupervised")
    parts = [texts[i::3] for i in range(3)]
    runs = [tokenize_one(impl, part) for part in parts]
    with open(ROOT / "benchmarks" / f".tokens_{impl}.pkl", "wb") as f:  # compared by compare_tokens()
        pickle.dump([t for tokens, _, _ in runs for t in tokens], f)
    return {**spread("docs_per_s", [len(part) for part in parts], [a + b for _, a, b in runs]), "docs": len(texts),
            "seconds": sum(a + b for _, a, b in runs), "tokenize_seconds": sum(a for _, a, _ in runs),
            "numericalize_seconds": sum(b for _, _, b in runs), "peak_mem_mb": peak_mb()}


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
    import shutil

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


# ---------------------------------------------------------------- the chunked softmax alone


def softmax_case(config, impl, device="cpu"):
    """Forward and backward of the decoder's loss on one batch of random features: ours over row blocks
    (SoftmaxCrossEntropy) or F.cross_entropy of the whole [rows, vocab] logits (impl "full_..."). The extra
    memory is the peak over the process's peak before the first step."""
    import torch
    import torch.nn.functional as F

    from ulmfit.awd_lstm import SoftmaxCrossEntropy, softmax_block

    emb, _, vocab, bs, bptt, *_ = CONFIGS[config]
    warmup, timed = steps_for(config, device)
    torch.manual_seed(0)
    bf16 = impl.endswith("bf16")
    h = torch.randn(bs * bptt, emb, device=device, dtype=torch.bfloat16 if bf16 else torch.float32, requires_grad=True)
    weight = torch.nn.Parameter(torch.randn(vocab, emb, device=device) * 0.1)
    bias = torch.nn.Parameter(torch.zeros(vocab, device=device))
    targets = torch.randint(0, vocab, (bs * bptt,), device=device)

    def step():
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            if impl.startswith("full"):
                loss = F.cross_entropy(F.linear(h, weight, bias).float(), targets)
            else:
                loss = SoftmaxCrossEntropy.apply(h, weight, bias, targets)
        loss.backward()
        h.grad = weight.grad = bias.grad = None

    before = peak_mb(device)
    times = step_times(step, warmup, timed, device)
    return {"seconds": float(np.median(times)), "min_seconds": min(times), "max_seconds": max(times), "steps": timed,
            "tokens_per_s": bs * bptt / float(np.median(times)), "extra_peak_mem_mb": peak_mb(device) - before,
            "block_rows": None if impl.startswith("full") else softmax_block(vocab, h.element_size(), torch.device(device).type),
            "peak_mem_mb": peak_mb(device)}


CASES = {
    "lm_train": lambda config, impl, device: lm_case(config, impl, train=True, device=device),
    "lm_infer": lambda config, impl, device: lm_case(config, impl, train=False, device=device),
    "lm_loss_check": lambda config, impl, device: lm_loss_check(),
    "clf_train": clf_case,
    "tokenize": lambda config, impl, device: tokenize_case(impl),
    "predict": predict_case,
    "softmax": softmax_case,
}
SOFTMAX_IMPLS = ("chunked_bf16", "full_bf16", "chunked_fp32", "full_fp32")
PLAN = (
    [("lm_train", c, i) for c in MAIN_CONFIGS for i in ("ours_bf16", "ours_fp32", "ours_noreg_bf16", "plain_bf16", "plain_fp32", "fastai_fp32")]
    + [("lm_infer", c, i) for c in ("cpu-profile", "fastai-reference") for i in ("ours_bf16", "ours_fp32", "plain_fp32", "fastai_fp32")]
    + [("lm_loss_check", "cpu-profile", "ours")]
    + [("softmax", c, i) for c in MAIN_CONFIGS for i in SOFTMAX_IMPLS]
    + [("clf_train", "cpu-profile", i) for i in ("ours_bf16", "ours_fp32", "fastai_fp32")]
    + [("tokenize", "-", i) for i in ("ours", "fastai")]
    + [("predict", "cpu-profile", i) for i in ("ours", "fastai_get_preds", "fastai")]
)


def device_plan(configs=MAIN_CONFIGS):
    """The cases that run on an accelerator (`--device cuda`): LM training, the softmax, classifier, prediction."""
    return ([("lm_train", c, i) for c in configs for i in ("ours_bf16", "ours_fp32", "plain_bf16", "plain_fp32", "fastai_fp32")]
            + [("softmax", c, i) for c in configs for i in ("chunked_bf16", "full_bf16")]
            + [("clf_train", configs[0], i) for i in ("ours_bf16", "ours_fp32", "fastai_fp32")]
            + [("predict", configs[0], i) for i in ("ours", "fastai_get_preds")])


def has_fastai():
    try:
        import fastai.text.all  # noqa: F401
    except Exception:
        return False
    return True


def machine(device):
    from ulmfit.precision import device_name

    cpu = f"{device_name('cpu')}, {os.cpu_count()} cores"
    return cpu if device == "cpu" else f"{device_name(device)} ({cpu})"


def auto_precision(device):
    """(the precision `auto` picks on device, why): the benchmark measures bf16 cases only where it is bf16."""
    from ulmfit.precision import native_bf16, resolve

    return resolve("auto", device), native_bf16(__import__("torch").device(device).type)[1]


def run_all(out, device="cpu", plan=PLAN, name="results"):
    """Every case of `plan` in its own process on `device`; writes out/<name>.json and out/<name>.md."""
    auto, why = auto_precision(device)
    results = {"machine": machine(device), "device": device, "torch": __import__("torch").__version__, "fastai": None,
               "measured": time.strftime("%Y-%m-%d %H:%M %Z"), "precision_auto": auto, "precision_reason": why, "cases": []}
    fastai_ok = has_fastai()
    if fastai_ok:
        import fastai

        results["fastai"] = fastai.__version__
    for case, config, impl in plan:
        if impl.startswith("fastai") and not fastai_ok:
            results["cases"].append({"case": case, "config": config, "impl": impl,
                                     "skipped": "fastai is not installed (pip install -e '.[bench]')"})
            continue
        if auto == "fp32" and (impl.endswith("bf16") or case == "lm_loss_check"):
            results["cases"].append({"case": case, "config": config, "impl": impl,
                                     "skipped": f"precision auto runs fp32 on this {device}: {why}"})
            continue
        print(f"{case} {config} {impl} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--case", case, "--config", config, "--impl", impl,
                               "--device", device], capture_output=True, text=True)
        row = {"case": case, "config": config, "impl": impl}
        if proc.returncode:
            row["error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        else:
            row.update(json.loads(proc.stdout.rsplit(RESULT, 1)[1]) if RESULT in proc.stdout else {"error": "no result"})
        print("   ", row, flush=True)
        results["cases"].append(row)
    results["tokens_compared"] = compare_tokens()
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown(results))


def measured(r, case, config, impl, key):
    """The row of `case` at `config` by `impl` that measured `key`, or None."""
    return next((x for x in r["cases"] if (x["case"], x["config"], x["impl"]) == (case, config, impl) and key in x), None)


def find(r, case, config, impl, key):
    row = measured(r, case, config, impl, key)
    return row and row[key]


def cell(r, case, config, impl, key):
    """A measured rate as "median (min-max)" over its repetitions, or "–"."""
    row = measured(r, case, config, impl, key)
    if not (row and row[key]):
        return "–"
    f = ",.0f" if row[key] >= 100 else ",.1f"
    lo, hi = row.get(f"{key}_min"), row.get(f"{key}_max")
    return f"{row[key]:{f}}" + ("" if lo is None else f" ({lo:{f}}-{hi:{f}})")


def ratio(a, b):
    return "–" if not a or not b else f"{a / b:.2f}x"


def has(r, case):
    return any(row["case"] == case for row in r["cases"])


def configs_of(r, case):
    return [c for c in CONFIGS if any((row["case"], row["config"]) == (case, c) for row in r["cases"])]


def markdown(r):
    device = r.get("device", "cpu")
    memory = "the process's peak resident memory" if device == "cpu" else "peak allocated GPU memory"
    lines = ["# Benchmarks", "", f"Machine: {r['machine']}; device {device}; torch {r['torch']}; fastai {r['fastai'] or 'not installed'}"
             + (f"; measured {r['measured']}" if r.get("measured") else "") + ". "
             + (f"Precision `auto` picks {r['precision_auto']} here ({r['precision_reason']}). " if r.get("precision_auto") else "") +
             f"Produced by `python benchmarks/run.py{'' if device == 'cpu' else ' --device ' + device}`. Rates: the median over "
             "repetitions, with min-max in brackets (LM cases: timed steps after warm-up; classifiers: 3 epochs; "
             "tokenization: three thirds of the texts; prediction: 3 passes over the texts); each case ran in its own "
             f"process (peak memory: {memory}). Ratios compare the medians of rows measured in this same run.", ""]
    sections = {"lm_train": lm_train_section, "lm_infer": lm_infer_section, "softmax": softmax_section,
                "clf_train": clf_section, "tokenize": tokenize_section, "predict": predict_section}
    for case, section in sections.items():
        if has(r, case):
            lines += section(r)
    lines += ["", "## Peak memory (MB) per case", "", "| Case | Config | Implementation | Peak MB |", "|---|---|---|---:|"]
    lines += [f"| {x['case']} | {x['config']} | {x['impl']} | {x.get('peak_mem_mb', 0):,.0f} |" for x in r["cases"] if "peak_mem_mb" in x]
    skipped = [x for x in r["cases"] if "skipped" in x or "error" in x]
    if skipped:
        lines += ["", "Not measured:", ""] + [f"- {x['case']} {x['config']} {x['impl']}: {x.get('skipped') or x.get('error')}" for x in skipped]
    return "\n".join(lines) + "\n"


def lm_train_section(r):
    lines = ["## Language-model training (tokens/s)", "",
             "Headline ratios compare the same dtype: ours fp32 / fastai fp32 and ours bf16 / plain bf16. The last ratio, "
             "ours bf16 / fastai fp32, is what each user gets by default on a CPU (fastai's MixedPrecision autocasts only "
             "on CUDA), not a measure of the engine.", "",
             "| Config | ours bf16 | ours fp32 | ours bf16 without regularisation | plain bf16 | plain fp32 | fastai fp32 "
             "| **ours fp32 / fastai fp32** | **ours bf16 / plain bf16** | ours bf16 / fastai fp32 (defaults) "
             "| regularisation overhead (bf16) | peak MB (ours bf16) |",
             "|---|" + "---:|" * 11]
    for c in configs_of(r, "lm_train"):
        g = {i: find(r, "lm_train", c, i, "tokens_per_s") for i in ("ours_bf16", "ours_fp32", "ours_noreg_bf16", "plain_bf16",
                                                                  "plain_fp32", "fastai_fp32")}
        over = "–" if not (g["ours_bf16"] and g["ours_noreg_bf16"]) else f"{(g['ours_noreg_bf16'] / g['ours_bf16'] - 1) * 100:+.1f}%"
        lines.append(f"| {c} {CONFIGS[c][:3]} | " + " | ".join(cell(r, "lm_train", c, i, "tokens_per_s") for i in g)
                     + f" | {ratio(g['ours_fp32'], g['fastai_fp32'])} | {ratio(g['ours_bf16'], g['plain_bf16'])} | "
                     f"{ratio(g['ours_bf16'], g['fastai_fp32'])} | {over} | "
                     f"{find(r, 'lm_train', c, 'ours_bf16', 'peak_mem_mb') or 0:,.0f} |")
    check = find(r, "lm_loss_check", "cpu-profile", "ours", "relative_difference")
    if check is not None:
        row = next(x for x in r["cases"] if x["case"] == "lm_loss_check")
        lines += ["", f"Loss after {row['steps']} steps from the same weights and batches: fp32 {row['fp32']:.4f}, "
                      f"bf16 {row['bf16']:.4f} (relative difference {check * 100:.2f}%)."]
    return lines


def lm_infer_section(r):
    lines = ["", "## Language-model inference (tokens/s)", "", "| Config | ours bf16 | ours fp32 | plain fp32 | fastai fp32 "
             "| **ours fp32 / fastai fp32** | ours fp32 / plain fp32 | ours bf16 / fastai fp32 (defaults) |", "|---|" + "---:|" * 7]
    for c in configs_of(r, "lm_infer"):
        g = {i: find(r, "lm_infer", c, i, "tokens_per_s") for i in ("ours_bf16", "ours_fp32", "plain_fp32", "fastai_fp32")}
        lines.append(f"| {c} | " + " | ".join(cell(r, "lm_infer", c, i, "tokens_per_s") for i in g)
                     + f" | {ratio(g['ours_fp32'], g['fastai_fp32'])} | {ratio(g['ours_fp32'], g['plain_fp32'])} | "
                     f"{ratio(g['ours_bf16'], g['fastai_fp32'])} |")
    return lines


def softmax_section(r):
    lines = ["", "## The decoder's loss alone: chunked softmax against full logits (forward + backward)", "",
             "One batch of random features (rows = batch x BPTT, the config's embedding size) against the config's "
             "vocabulary: ours over row blocks (ulmfit/awd_lstm.py SoftmaxCrossEntropy) or F.cross_entropy of the whole "
             "logits. Seconds per step: median (min-max); extra memory: the peak above the process's peak before the "
             "first step.", "",
             "| Config | dtype | block rows | chunked s | full s | **full s / chunked s** | chunked extra MB | full extra MB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for c in configs_of(r, "softmax"):
        for dtype in ("bf16", "fp32"):
            a, b = (measured(r, "softmax", c, f"{k}_{dtype}", "seconds") for k in ("chunked", "full"))
            if not (a or b):
                continue
            span = lambda x: "–" if not x else f"{x['seconds']:.3f} ({x['min_seconds']:.3f}-{x['max_seconds']:.3f})"  # noqa: E731
            lines.append(f"| {c} {CONFIGS[c][:3]} | {dtype} | {a['block_rows'] if a else '–'} | {span(a)} | {span(b)} | "
                         f"{ratio(b and b['seconds'], a and a['seconds'])} | "
                         + " | ".join("–" if not x else f"{x['extra_peak_mem_mb']:,.0f}" for x in (a, b)) + " |")
    return lines


def clf_section(r):
    c = configs_of(r, "clf_train")[0]
    g = {i: find(r, "clf_train", c, i, "docs_per_s") for i in ("ours_bf16", "ours_fp32", "fastai_fp32")}
    return ["", "## Classifier training on IMDb (documents/s)", "",
            f"Real reviews (mean {find(r, 'clf_train', c, 'ours_bf16', 'mean_tokens') or 0:.0f} tokens), "
            f"{c} model, batch 64, BPT3C chunks of 70, gradients and pooling on the last 140 tokens (fastai keeps whole chunks, so a multiple of 70), every layer trained; "
            f"{EPOCHS} timed epochs of 1,024 reviews after a warm-up (fastai: its batches' own time, without its "
            "data loading between batches).", "",
            "| ours bf16 | ours fp32 | fastai fp32 | **ours fp32 / fastai fp32** | ours bf16 / fastai fp32 (defaults) |",
            "|---:|---:|---:|---:|---:|",
            "| " + " | ".join(cell(r, "clf_train", c, i, "docs_per_s") for i in g)
            + f" | {ratio(g['ours_fp32'], g['fastai_fp32'])} | {ratio(g['ours_bf16'], g['fastai_fp32'])} |"]


def tokenize_section(r):
    g = {i: find(r, "tokenize", "-", i, "docs_per_s") for i in ("ours", "fastai")}
    t = r.get("tokens_compared") or {}
    secs = {i: (find(r, "tokenize", "-", i, "tokenize_seconds"), find(r, "tokenize", "-", i, "numericalize_seconds"))
            for i in ("ours", "fastai")}
    split = " / ".join(f"{i} {a:.0f} s + {b:.0f} s" for i, (a, b) in secs.items() if a is not None)
    lines = ["", "## Tokenization + numericalization: all 100,000 IMDb texts (documents/s, 2 workers)", "",
             "Three repetitions, each a third of the texts tokenized, given its own vocabulary of at most 60,000 tokens "
             f"with min_freq 3 (the paper's) and numericalized. Tokenize + numericalize, all three: {split}.", "",
             "| ours | fastai (spaCy) | ours / fastai | identical documents |", "|---:|---:|---:|---:|",
             "| " + " | ".join(cell(r, "tokenize", "-", i, "docs_per_s") for i in g) + f" | {ratio(g['ours'], g['fastai'])} | "
             + (f"{t['identical']:,} / {t['documents']:,} ({t['identical_fraction'] * 100:.3f}%)" if t else "–") + " |"]
    if t and t["differences"]:
        lines += ["", "Kinds of differences (first differing tokens, with one document index):", ""]
        lines += [f"- {k} (document {v})" for k, v in t["differences"].items()]
    return lines


def predict_section(r):
    c = configs_of(r, "predict")[0]
    g = {i: find(r, "predict", c, i, "docs_per_s") for i in ("ours", "fastai_get_preds", "fastai")}
    return ["", "## Inference: 1,000 IMDb test reviews from raw text (documents/s)", "",
            "Tokenization included on both sides. Ours (`ulmfit predict`) and fastai's batched path (`dls.test_dl(texts)` "
            "+ `learn.get_preds`) both predict in batches of 64; ours in bf16, fastai in fp32 (its CPU default). "
            "The last columns time fastai's `learn.predict` called once per text.", "",
            "| `ulmfit predict` | fastai `test_dl` + `get_preds` | **ours / get_preds** | fastai `learn.predict` loop "
            "| ours / predict loop |", "|---:|---:|---:|---:|---:|",
            f"| {cell(r, 'predict', c, 'ours', 'docs_per_s')} | {cell(r, 'predict', c, 'fastai_get_preds', 'docs_per_s')} | "
            f"{ratio(g['ours'], g['fastai_get_preds'])} | {cell(r, 'predict', c, 'fastai', 'docs_per_s')} | "
            f"{ratio(g['ours'], g['fastai'])} |"]


# ---------------------------------------------------------------- paper-profile smoke run


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


# ---------------------------------------------------------------- the pipeline's own overhead


def overhead(metrics_path=ROOT / "reports" / "metrics.json"):
    """The share of a finished `dvc repro` spent outside the stages' own work (process start-up, imports, DVC's
    bookkeeping), from the `cost` that experiments/report.py writes into metrics.json."""
    path = Path(metrics_path)
    if not path.exists():
        raise SystemExit(f"--overhead: {path} does not exist; run the pipeline (dvc repro) to write it, or pass --metrics")
    cost = json.loads(path.read_text()).get("cost")
    if not cost:
        raise SystemExit(f"--overhead: {path} has no 'cost'; rerun the report stage (dvc repro report)")
    outside = max(0.0, cost["elapsed_minutes"] - cost["work_minutes"])
    return {"elapsed_minutes": cost["elapsed_minutes"], "work_minutes": cost["work_minutes"], "outside_minutes": outside,
            "outside_fraction": outside / cost["elapsed_minutes"]}


def stage_scripts():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values()
    return sorted({word for stage in stages for word in stage.get("do", stage)["cmd"].split() if word.endswith(".py")})


def import_seconds(script, repeats=3):
    """Fastest of `repeats` runs of a fresh python that only runs `script`'s top-level imports: the start-up
    cost every process of that stage pays before its work."""
    import ast

    tree = ast.parse((ROOT / script).read_text())
    code = "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in ("", "experiments", "benchmarks"))}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT / Path(script).parent, check=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case")
    parser.add_argument("--config")
    parser.add_argument("--impl")
    parser.add_argument("--device", default="cpu", help="cpu (every case: results.md) or cuda (the LM, softmax, "
                        "classifier and predict cases: results-gpu.md)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks"))
    parser.add_argument("--render", action="store_true", help="only rewrite results.md from results.json in --out")
    parser.add_argument("--calibrate", action="store_true", help="only print this machine's calibration figure "
                        "(LM-training tokens/s of the cpu-profile case, about a minute; see calibrate.py)")
    parser.add_argument("--smoke", action="store_true", help="only measure LM and classifier tokens/s at a profile's "
                        "sizes (--profile, --steps, --docs); writes smoke-<device>.json in --out")
    parser.add_argument("--profile", default=str(ROOT / "profiles" / "paper.yaml"))
    parser.add_argument("--steps", type=int, default=300, help="--smoke: LM-training steps")
    parser.add_argument("--docs", type=int, default=1000, help="--smoke: IMDb reviews of the classifier epoch")
    parser.add_argument("--overhead", action="store_true", help="only print the share of a finished run spent outside "
                        "the stages' own work, from --metrics")
    parser.add_argument("--metrics", default=str(ROOT / "reports" / "metrics.json"))
    args = parser.parse_args()
    if args.device != "cpu" and not __import__("torch").cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no GPU here (torch.cuda.is_available() is False); "
                     "install a CUDA build of torch or use --device cpu")
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
        print("\n" + RESULT + json.dumps(CASES[args.case](args.config, args.impl, args.device)))
    elif args.overhead:
        o = overhead(args.metrics)
        print(f"pipeline overhead: {o['outside_minutes']:.1f} of {o['elapsed_minutes']:.1f} elapsed minutes "
              f"({o['outside_fraction'] * 100:.1f}%) outside the stages' own work ({o['work_minutes']:.1f} min; target < 10%)")
        print("start-up + top-level imports of one process, fastest of 3:")
        for script in stage_scripts():
            print(f"  {script}: {import_seconds(script):.2f} s")
    elif args.smoke:
        result = smoke(args.device, args.profile, args.steps, args.docs)
        Path(args.out, f"smoke-{args.device}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"LM training {result['lm_tokens_per_s']:,.0f} tokens/s ({result['lm_steps']} steps), classifier "
              f"{result['clf_tokens_per_s']:,.0f} tokens/s ({result['clf_docs_per_s']:,.1f} docs/s) on {result['machine']}")
    elif args.device == "cpu":
        run_all(Path(args.out))
    else:
        run_all(Path(args.out), args.device, device_plan(), "results-gpu")


if __name__ == "__main__":
    main()
