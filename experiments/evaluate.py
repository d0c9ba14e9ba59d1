"""Stage evaluate: python experiments/evaluate.py DATASET

Test error of the forward and backward ULMFiT classifiers of every seed and of their ensemble,
which averages the two classifiers' probabilities."""

import sys

from common import ROOT, data_dir, load_params, run_dir

from ulmfit import steps
from ulmfit.io import atomic_dir, write_json

dataset = sys.argv[1]
p = load_params()
results = {}
with atomic_dir(ROOT / "runs" / "evaluate" / dataset, "evaluate", ("summary.json", "*.json")) as out:
    for seed in p["seeds"]:
        models = {v: run_dir(dataset, v) / str(seed) for v in ("ulmfit", "bwd")}
        results[seed] = steps.evaluate(data_dir(dataset), models, out / f"{seed}.json")
    write_json(out / "summary.json", results)
