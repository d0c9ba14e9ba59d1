"""Tokenization + numericalization of all 100,000 IMDb texts (documents/s): ours (ulmfit/text.py) against fastai's
spaCy tokenizer and Numericalize, and how many documents both split alike. (Not tokenize.py: that would hide the
standard library's module of that name from every script in this folder.)"""

import pickle
import time

from harness import ROOT, cell, find, imdb_texts, peak_mb, ratio, spread


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
    texts = imdb_texts("train") + imdb_texts("test") + imdb_texts("unsupervised")
    parts = [texts[i::3] for i in range(3)]
    runs = [tokenize_one(impl, part) for part in parts]
    with open(ROOT / "benchmarks" / f".tokens_{impl}.pkl", "wb") as f:  # compared by compare_tokens()
        pickle.dump([t for tokens, _, _ in runs for t in tokens], f)
    return {**spread("docs_per_s", [len(part) for part in parts], [a + b for _, a, b in runs]), "docs": len(texts),
            "seconds": sum(a + b for _, a, b in runs), "tokenize_seconds": sum(a for _, a, _ in runs),
            "numericalize_seconds": sum(b for _, _, b in runs), "peak_mem_mb": peak_mb()}


def compare_tokens():
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
