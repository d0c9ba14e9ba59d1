"""Stage evaluate: python experiments/evaluate.py DATASET

Test error of the forward and backward ULMFiT classifiers of every seed and of their ensemble,
which averages the two classifiers' probabilities."""

import sys

from common import ROOT, clf_dir, data_dir, load_params

from ulmfit import steps
from ulmfit.io import write_json

dataset = sys.argv[1]
p = load_params()
results = {}
for seed in p["seeds"]:
    models = {v: clf_dir(dataset, v, "max", seed) for v in ("ulmfit", "backward") if v in p["clf_variants"]}
    results[seed] = steps.evaluate(data_dir(dataset), models, ROOT / "runs" / "evaluate" / dataset / f"{seed}.json")
write_json(ROOT / "runs" / "evaluate" / dataset / "summary.json", results)
