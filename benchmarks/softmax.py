"""The decoder's loss alone: our chunked softmax (ulmfit/awd_lstm.py SoftmaxCrossEntropy) against F.cross_entropy of
the whole logits, forward + backward of one batch of random features."""

import numpy as np
from harness import CONFIGS, configs_of, measured, peak_mb, ratio, step_times, steps_for

IMPLS = ("chunked_bf16", "full_bf16", "chunked_fp32", "full_fp32")


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
