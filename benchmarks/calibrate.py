"""Machine calibration: LM-training tokens/s of the fixed `cpu-profile` case, in about a minute.

    python benchmarks/calibrate.py [--out runs/calibration.json]     (also: benchmarks/run.py --calibrate)

The case is benchmarks/run.py's `cpu-profile` LM-training case: our AWD-LSTM at 128/192 with a
10,000-token vocabulary and the paper's dropouts, AR/TAR, AdamW, batch 32 x BPTT 70, bf16
autocast, all cores. Its token ids are drawn from a fixed Zipf-like distribution instead of read
from IMDb, so that it needs no data; the rate depends on the shapes, not on the ids. The reference
machine trains it at 15,600 tokens/s; the report divides by that to normalise its wall times.
"""

import argparse
import json
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
WARMUP, STEPS, REPEATS = 5, 20, 9


def token_batches(n, seed=0):
    """n (input, target) batches of a fixed Zipf-like token stream."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, VOCAB + 1)
    stream = torch.from_numpy(rng.choice(VOCAB, size=n * BATCH * BPTT + 1, p=p / p.sum()).astype(np.int64))
    size = BATCH * BPTT
    return [(stream[i * size : (i + 1) * size].view(BATCH, BPTT), stream[i * size + 1 : (i + 1) * size + 1].view(BATCH, BPTT))
            for i in range(n)]


def calibrate():
    """Median tokens/s over REPEATS timed runs of STEPS training steps, with the min and max."""
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
    rates = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for x, y in batches:
            step(x, y)
        rates.append(STEPS * BATCH * BPTT / (time.perf_counter() - start))
    return {"tokens_per_s": float(np.median(rates)), "min": float(min(rates)), "max": float(max(rates)),
            "repeats": REPEATS, "reference_tokens_per_s": REFERENCE_TOKENS_PER_S, "machine": platform.machine(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "measured": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "started": round(started, 2), "finished": round(time.time(), 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the result as JSON to this file")
    args = parser.parse_args()
    result = calibrate()
    print(f"calibration: {result['tokens_per_s']:,.0f} LM-training tokens/s (min {result['min']:,.0f}, "
          f"max {result['max']:,.0f}; reference machine {REFERENCE_TOKENS_PER_S:,})")
    if args.out:
        from ulmfit.io import write_json

        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        write_json(args.out, result)


if __name__ == "__main__":
    main()
