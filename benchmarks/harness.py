"""What every benchmark case shares: its configurations and data, timing, running each case in a process of its own,
results.json, and the assembly of results.md from the cases' sections (benchmarks/run.py lists them)."""

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

# ---------------------------------------------------------------- data


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


# ---------------------------------------------------------------- timing


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


# ---------------------------------------------------------------- fastai, the baseline


def has_fastai():
    try:
        import fastai.text.all  # noqa: F401
    except Exception:
        return False
    return True


def fastai_config(emb, hidden, classifier=False):
    from fastai.text.all import awd_lstm_clas_config, awd_lstm_lm_config

    cfg = dict(awd_lstm_clas_config if classifier else awd_lstm_lm_config)
    cfg.update(emb_sz=emb, n_hid=hidden, n_layers=3, **DROPOUTS)
    return cfg


# ---------------------------------------------------------------- the machine


def machine(device):
    from ulmfit.precision import device_name

    cpu = f"{device_name('cpu')}, {os.cpu_count()} cores"
    return cpu if device == "cpu" else f"{device_name(device)} ({cpu})"


def auto_precision(device):
    """(the precision `auto` picks on device, why): the benchmark measures bf16 cases only where it is bf16."""
    from ulmfit.precision import native_bf16, resolve

    return resolve("auto", device), native_bf16(__import__("torch").device(device).type)[1]


# ---------------------------------------------------------------- running a plan


def run_case(case, config, impl, device):
    """One case in a fresh process (benchmarks/run.py --case), so that its peak memory is its own: its result row."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--case", case, "--config", config,
                           "--impl", impl, "--device", device], capture_output=True, text=True)
    row = {"case": case, "config": config, "impl": impl}
    if proc.returncode:
        row["error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
    else:
        row.update(json.loads(proc.stdout.rsplit(RESULT, 1)[1]) if RESULT in proc.stdout else {"error": "no result"})
    return row


def run_cases(plan, device="cpu"):
    """The results of every (case, config, impl) of `plan` on `device`, with the machine they ran on; fastai's rows
    are skipped without fastai, bf16 rows where precision auto runs fp32."""
    auto, why = auto_precision(device)
    results = {"machine": machine(device), "device": device, "torch": __import__("torch").__version__, "fastai": None,
               "measured": time.strftime("%Y-%m-%d %H:%M %Z"), "precision_auto": auto, "precision_reason": why, "cases": []}
    fastai_ok = has_fastai()
    if fastai_ok:
        import fastai

        results["fastai"] = fastai.__version__
    for case, config, impl in plan:
        row = {"case": case, "config": config, "impl": impl}
        if impl.startswith("fastai") and not fastai_ok:
            row["skipped"] = "fastai is not installed (pip install -e '.[bench]')"
        elif auto == "fp32" and (impl.endswith("bf16") or case == "lm_loss_check"):
            row["skipped"] = f"precision auto runs fp32 on this {device}: {why}"
        else:
            print(f"{case} {config} {impl} ...", flush=True)
            row = run_case(case, config, impl, device)
            print("   ", row, flush=True)
        results["cases"].append(row)
    return results


def write(out, name, results, text):
    """out/<name>.json and out/<name>.md."""
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text(text)


# ---------------------------------------------------------------- reading results


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


# ---------------------------------------------------------------- results.md


def markdown(r, sections):
    """results.md: the machine, then the section of each case of `sections` ({case: section(r) -> lines}) that `r`
    holds, in that order, then every case's peak memory and what was not measured."""
    device = r.get("device", "cpu")
    memory = "the process's peak resident memory" if device == "cpu" else "peak allocated GPU memory"
    lines = ["# Benchmarks", "", f"Machine: {r['machine']}; device {device}; torch {r['torch']}; fastai {r['fastai'] or 'not installed'}"
             + (f"; measured {r['measured']}" if r.get("measured") else "") + ". "
             + (f"Precision `auto` picks {r['precision_auto']} here ({r['precision_reason']}). " if r.get("precision_auto") else "") +
             f"Produced by `python benchmarks/run.py{'' if device == 'cpu' else ' --device ' + device}`. Rates: the median over "
             "repetitions, with min-max in brackets (LM cases: timed steps after warm-up; classifiers: 3 epochs; "
             "tokenization: three thirds of the texts; prediction: 3 passes over the texts); each case ran in its own "
             f"process (peak memory: {memory}). Ratios compare the medians of rows measured in this same run.", ""]
    for case, section in sections.items():
        if has(r, case):
            lines += section(r)
    lines += ["", "## Peak memory (MB) per case", "", "| Case | Config | Implementation | Peak MB |", "|---|---|---|---:|"]
    lines += [f"| {x['case']} | {x['config']} | {x['impl']} | {x.get('peak_mem_mb', 0):,.0f} |" for x in r["cases"] if "peak_mem_mb" in x]
    skipped = [x for x in r["cases"] if "skipped" in x or "error" in x]
    if skipped:
        lines += ["", "Not measured:", ""] + [f"- {x['case']} {x['config']} {x['impl']}: {x.get('skipped') or x.get('error')}" for x in skipped]
    return "\n".join(lines) + "\n"
