"""The machine's limit, measured in the same run: the matmul peak in each precision, and the model FLOP/s each LM,
softmax and classifier case reached as a fraction of the peak of the precision it ran in.

The peak is the fastest of square matmuls C = A @ B (2 n^3 FLOPs) of a few sizes, timed one product at a time. On a
2-core Xeon with AVX-512 (no bf16) fp32 ran at 77 / 126 / 156 GFLOP/s at n = 1,024 / 2,048 / 4,096 and no faster at
6,144 (about 145, a busy machine), a product at 4,096 taking about a second: the case takes some 10 s. bf16 is measured
only where precision `auto` picks it, as every bf16 case is; elsewhere it is skipped with auto's reason (its bf16 would
be emulated, and no case runs in it). On a GPU, cuDNN may run an fp32 LSTM in TF32 (torch.backends.cudnn.allow_tf32 is
on by default) while the fp32 peak is true fp32, so an fp32 case's fraction can pass 1 there.

Model FLOPs count matmuls only (see FLOPS_NOTE); they are computed when results.md is written, from each row's rate,
its config's sizes and the same run's peak, and written into its row of results.json too.
"""

from clf import MAX_LEN
from harness import CONFIGS, peak_mb, spread, step_times

from ulmfit.awd_lstm import lm_flops, lstm_flops

SIZES = {"cpu": (1024, 2048, 4096), "cuda": (4096, 8192, 16384), "tiny": (32, 64)}  # n of the square matmuls
STEPS = {"cpu": (1, 5), "cuda": (3, 20), "tiny": (1, 3)}  # warm-up and timed products at each size
COUNTED = ("lm_train", "lm_infer", "softmax", "clf_train")  # the cases whose model FLOP/s is reported
FLOPS_NOTE = (
    "Model FLOPs per token, from the shapes, matmuls only (regularisers, embedding lookups and elementwise ops such "
    "as the gates' nonlinearities and the softmax are left out): an LSTM layer with input size n_in and hidden size "
    "h costs 2 x 4h x (n_in + h) forward (its four gates' input and recurrent matmuls), the tied decoder 2 x emb x "
    "vocab; training costs 3 x forward (the forward matmul and the backward pass's two, for the gradients of the "
    "input and of the weight). So 3.97 MFLOP a token forward at cpu-profile (128, 192, 10k) and 88.4 at the paper's "
    "sizes (400, 1150, 60k). The softmax case: 6 x emb x vocab a row (the logits, the gradient of the features and "
    "that of the weight). The classifier: its encoder's LSTM layers only (no decoder; the head's 2 x (3 emb x 50 + "
    "50 x 2) FLOPs a document, about 0.01% at cpu-profile, are left out); BPT3C runs the forward pass over the whole document and "
    "the backward pass over its last max_len tokens only, so E x (T + 2 min(T, max_len)) a document, with E the LSTM "
    f"layers' forward FLOPs a token, T the case's mean tokens a document and max_len {MAX_LEN}, and that / T a token. "
    "The baselines' rows are counted the same way (same shapes). Model FLOP/s: tokens/s (classifier: documents/s x "
    "T) x FLOPs a token; fraction of peak: that over the same run's peak in the case's precision."
)

# ---------------------------------------------------------------- the peak


def matmul_rate(n, dtype, device, warmup, timed):
    """FLOP/s of n x n matmuls in `dtype`: median, min and max over `timed` products after `warmup`."""
    import torch

    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    c = torch.empty(n, n, device=device, dtype=dtype)
    times = step_times(lambda: torch.mm(a, b, out=c), warmup, timed, device)
    return spread("flops_per_s", [2 * n**3] * timed, times)


def peak_case(config, impl, device="cpu"):
    """The matmul peak in `impl` (fp32 or bf16): the rate of the size with the fastest median, and every size's
    median (`by_size`), which shows whether the rate has levelled off. Config "tiny": the tests' sizes."""
    import torch

    kind = "tiny" if config == "tiny" else torch.device(device).type
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[impl]
    rates = {n: matmul_rate(n, dtype, device, *STEPS[kind]) for n in SIZES[kind]}
    n = max(rates, key=lambda n: rates[n]["flops_per_s"])
    return {**rates[n], "size": n, "by_size": {str(k): v["flops_per_s"] for k, v in rates.items()},
            "peak_mem_mb": peak_mb(device)}


# ---------------------------------------------------------------- model FLOPs


def clf_flops(emb, hidden, tokens, max_len=MAX_LEN):
    """Training FLOPs a document of `tokens` tokens of the classifier's encoder: forward over all of them, backward
    (2 x forward) over the last max_len."""
    return lstm_flops(emb, hidden) * (tokens + 2 * min(tokens, max_len))


def flops_per_token(row):
    """Model FLOPs a token of a measured row of one of the COUNTED cases."""
    emb, hidden, vocab, *_ = CONFIGS[row["config"]]
    if row["case"] == "softmax":
        return 6 * emb * vocab
    if row["case"] == "clf_train":
        return clf_flops(emb, hidden, row["mean_tokens"]) / row["mean_tokens"]
    return (3 if row["case"] == "lm_train" else 1) * lm_flops(emb, hidden, vocab)


def tokens_per_s(row):
    return row["docs_per_s"] * row["mean_tokens"] if row["case"] == "clf_train" else row["tokens_per_s"]


def counted(row):
    """Whether `row` measured a rate whose model FLOP/s is reported."""
    return row["case"] in COUNTED and ("tokens_per_s" in row or "docs_per_s" in row)


def peak_of(r, precision):
    """The run's measured peak FLOP/s in `precision`, or None."""
    return next((x["flops_per_s"] for x in r["cases"] if x["case"] == "peak" and x["impl"] == precision
                 and "flops_per_s" in x), None)


def model_flops(r, row):
    """A counted row's FLOPs a token, model FLOP/s and fraction of the run's peak in its precision (None without
    one: the precision is the last part of the row's impl, e.g. ours_bf16)."""
    flops = flops_per_token(row)
    peak = peak_of(r, row["impl"].rsplit("_", 1)[1])
    achieved = flops * tokens_per_s(row)
    return {"flops_per_token": flops, "model_flops_per_s": achieved, "fraction_of_peak": peak and achieved / peak}


def add_model_flops(r):
    """model_flops() written into each counted row of results `r`."""
    for row in r["cases"]:
        if counted(row):
            row.update(model_flops(r, row))


# ---------------------------------------------------------------- results.md


def giga(flops_per_s):
    return f"{flops_per_s / 1e9:,.1f}"


def peak_line(x):
    """A peak row of the table: the fastest size's median GFLOP/s (min-max), that size, every size's median."""
    if "flops_per_s" not in x:
        return f"| {x['impl']} | – | – | not measured (see below) |"
    by_size = ", ".join(f"{n}: {giga(v)}" for n, v in x["by_size"].items())
    return (f"| {x['impl']} | {giga(x['flops_per_s'])} ({giga(x['flops_per_s_min'])}-{giga(x['flops_per_s_max'])}) | "
            f"{x['size']} | {by_size} |")


def flops_line(r, x):
    """A counted case's row of the table: its FLOPs a token, tokens/s, model GFLOP/s and fraction of the peak."""
    m = model_flops(r, x)
    fraction = "–" if m["fraction_of_peak"] is None else f"{m['fraction_of_peak'] * 100:.3g}%"
    return (f"| {x['case']} | {x['config']} | {x['impl']} | {m['flops_per_token'] / 1e6:,.2f} | {tokens_per_s(x):,.0f} | "
            f"{giga(m['model_flops_per_s'])} | {fraction} |")


def peak_section(r):
    return (["", "## The machine's limit: matmul peak, and each case's model FLOP/s against it", "",
             f"Peak: square matmuls C = A @ B (2 n^3 FLOPs) on {r['machine']}, timed one product at a time after a "
             "warm-up at each size: the fastest size's median GFLOP/s (min-max), and each size's median, which shows "
             "where the rate levels off. bf16 only where precision `auto` picks it (elsewhere skipped: it would be "
             "emulated, and no case runs in it).", "",
             "| Precision | peak GFLOP/s | at n | median GFLOP/s by n |", "|---|---:|---:|---|"]
            + [peak_line(x) for x in r["cases"] if x["case"] == "peak"]
            + ["", FLOPS_NOTE, "",
               "| Case | Config | Implementation | model MFLOP/token | tokens/s | model GFLOP/s | **fraction of peak** |",
               "|---|---|---|---:|---:|---:|---:|"]
            + [flops_line(r, x) for x in r["cases"] if counted(x)])
