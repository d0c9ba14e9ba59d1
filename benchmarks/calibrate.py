"""Machine calibration: LM-training tokens/s of the fixed `cpu-profile` case, in about a minute.

    python benchmarks/calibrate.py [--out runs/calibration.json]     (also: benchmarks/run.py --calibrate)

The case is benchmarks/run.py's `cpu-profile` LM-training case: our AWD-LSTM at 128/192 with a
10,000-token vocabulary and the paper's dropouts, AR/TAR, AdamW, batch 32 x BPTT 70, bf16
autocast, all cores. Its token ids are drawn from a fixed Zipf-like distribution instead of read
from IMDb, so that it needs no data; the rate depends on the shapes, not on the ids. The reference
machine trains it at 15,600 tokens/s; the report divides by that to normalise its wall times.
"""

import argparse
import os
import platform
import time

import numpy as np
import torch

from ulmfit.awd_lstm import LanguageModel, ar_tar
from ulmfit.config import ModelConfig
from ulmfit.optim import AdamW

REFERENCE_TOKENS_PER_S = 15_600  # the cpu-profile case on the reference machine (2 cores)
EMB, HIDDEN, VOCAB, BATCH, BPTT = 128, 192, 10_000, 32, 70
WARMUP, STEPS = 5, 150


def token_batches(n, seed=0):
    """n (input, target) batches of a fixed Zipf-like token stream."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, VOCAB + 1)
    stream = torch.from_numpy(rng.choice(VOCAB, size=n * BATCH * BPTT + 1, p=p / p.sum()).astype(np.int64))
    size = BATCH * BPTT
    return [(stream[i * size : (i + 1) * size].view(BATCH, BPTT), stream[i * size + 1 : (i + 1) * size + 1].view(BATCH, BPTT))
            for i in range(n)]


def calibrate():
    """Tokens/s of the median of STEPS timed training steps (benchmarks/run.py's measure), with the
    rates of the 10% and 90% quantile steps."""
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    model = LanguageModel(VOCAB, ModelConfig(emb_size=EMB, hidden_size=HIDDEN)).train()
    opt = AdamW([{"params": list(model.parameters()), "lr": 1e-3}], betas=(0.7, 0.99), weight_decay=0.01)
    batches = token_batches(STEPS)

    def step(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, raw, dropped, _ = model.loss(x, y)
            loss = loss + ar_tar(raw, dropped, 2.0, 1.0)
        opt.zero_grad()
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
            "machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "measured": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "started": round(started, 2), "finished": round(time.time(), 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the result as JSON to this file")
    args = parser.parse_args()
    result = calibrate()
    print(f"calibration: {result['tokens_per_s']:,.0f} LM-training tokens/s (median step; 10-90% of steps "
          f"{result['slow_tokens_per_s']:,.0f}-{result['fast_tokens_per_s']:,.0f}; reference machine {REFERENCE_TOKENS_PER_S:,})")
    if args.out:
        from ulmfit.io import write_json

        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        write_json(args.out, result)


if __name__ == "__main__":
    main()
