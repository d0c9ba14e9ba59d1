"""Machine calibration: LM-training tokens/s of the fixed `cpu-profile` case, in about a minute.

    python benchmarks/calibrate.py [--precision auto] [--out runs/calibration.json]   (also: benchmarks/run.py --calibrate)

The case is the plain torch model that benchmarks/run.py compares against, at the `cpu-profile`
sizes: nn.Embedding, three stacked nn.LSTM at 128/192, a tied Linear decoder over a 10,000-token
vocabulary, full-logit cross entropy, torch's AdamW, batch 32 x BPTT 70, all cores, in the precision
the pipeline runs in on this machine (`auto`: bf16 where the CPU runs it natively, fp32 elsewhere;
ulmfit/precision.py). It runs none of this suite's engine (only its choice of precision), so the
figure measures the machine and torch, and stays put when our engine gets faster. The pipeline and
the calibration run in the same precision, so a machine without native bf16 is measured as it runs. Its token ids are drawn from a fixed Zipf-like distribution, so that it
needs no data; the rate depends on the shapes, not on the ids.

The reference machine is the one that trained the cpu-profile LM at 15,600 tokens/s, the figure the
profile was sized with, using this suite's engine of the time; the engine before the 2026-12-02
softmax change (commit 13da5bb) stands in for it. That engine and this case, measured in alternation
on one machine on 2026-12-02 (09:18 UTC), ran at 15,302 and 11,242 tokens/s (medians of 3 runs each),
so the reference machine runs this case at about 15,600 x 11,242 / 15,302 = 11,461 tokens/s (bf16,
which `auto` picks there); the report divides by that to normalise its wall times.
"""

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch
from torch import nn

REFERENCE_TOKENS_PER_S = 11_461  # this case on the reference machine (2 cores), derived as the docstring says
EMB, HIDDEN, VOCAB, BATCH, BPTT = 128, 192, 10_000, 32, 70
WARMUP, STEPS = 5, 150


def plain_lm(vocab, emb, hidden):
    """An LM of the AWD-LSTM's shapes from torch's own modules, with no regularisation."""

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
            return nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))

    return Plain()


def token_batches(n, seed=0):
    """n (input, target) batches of a fixed Zipf-like token stream."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, VOCAB + 1)
    stream = torch.from_numpy(rng.choice(VOCAB, size=n * BATCH * BPTT + 1, p=p / p.sum()).astype(np.int64))
    size = BATCH * BPTT
    return [(stream[i * size : (i + 1) * size].view(BATCH, BPTT), stream[i * size + 1 : (i + 1) * size + 1].view(BATCH, BPTT))
            for i in range(n)]


def calibrate(precision="auto"):
    """Tokens/s of the median of STEPS timed training steps (benchmarks/run.py's measure), with the
    rates of the 10% and 90% quantile steps, in `precision` (auto, fp32 or bf16)."""
    from ulmfit.precision import describe  # the choice of precision only, none of the engine

    machine = describe(precision, "cpu")
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    model = plain_lm(VOCAB, EMB, HIDDEN).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.7, 0.99), weight_decay=0.01)
    batches = token_batches(STEPS)

    def step(x, y):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=machine["precision"] == "bf16"):
            loss = model.loss(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()

    started = time.time()
    for x, y in batches[:WARMUP]:
        step(x, y)
    times = []
    for x, y in batches:
        start = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - start)
    tokens = BATCH * BPTT
    return {"tokens_per_s": tokens / float(np.median(times)), "slow_tokens_per_s": tokens / float(np.quantile(times, 0.9)),
            "fast_tokens_per_s": tokens / float(np.quantile(times, 0.1)), "steps": STEPS, "reference_tokens_per_s": REFERENCE_TOKENS_PER_S,
            **machine, "machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "measured": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "started": round(started, 2), "finished": round(time.time(), 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the result as JSON to this file")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto (default): bf16 where the CPU runs it natively, fp32 elsewhere")
    args = parser.parse_args()
    try:
        result = calibrate(args.precision)
    except ValueError as e:  # a precision this CPU cannot run
        raise SystemExit(print(f"calibrate.py: error: {e}", file=sys.stderr) or 2) from None
    print(f"calibration: {result['tokens_per_s']:,.0f} LM-training tokens/s in {result['precision']} on "
          f"{result['device_name']} (median step; 10-90% of steps "
          f"{result['slow_tokens_per_s']:,.0f}-{result['fast_tokens_per_s']:,.0f}; reference machine {REFERENCE_TOKENS_PER_S:,})")
    if args.out:
        from ulmfit.io import write_json

        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        write_json(args.out, result)


if __name__ == "__main__":
    main()
