"""Stage bow: python experiments/bow.py DATASET

The bag-of-words baseline on exactly the labelled examples the neural classifiers see: every
Figure 3 budget and the ablation budget, for every seed; validation error, and test error at
the ablation budget."""

import sys

from common import ROOT, data_dir, load_params

from ulmfit import steps
from ulmfit.baseline import bow_classifier, bow_probs
from ulmfit.data import stratified_sample
from ulmfit.io import write_json
from ulmfit.train import error_rate

dataset = sys.argv[1]
p = load_params()
pool, valid, test = (steps.load_prepared(data_dir(dataset), s) for s in ("train", "valid", "test"))
n_classes = len(steps.load_info(data_dir(dataset))["classes"])
runs = []
with steps.measured(record := {"dataset": dataset}):
    for seed in p["seeds"]:
        for budget in [*p["curve_budgets"], p[dataset]["budget"]]:
            train = pool.subset(stratified_sample(pool.labels, budget, seed, p[dataset]["balanced"])) if budget else pool
            model = bow_classifier(train)
            run = {"seed": seed, "n_train": len(train), "ablation": budget == p[dataset]["budget"],
                   "valid_error": error_rate(bow_probs(model, valid, n_classes), valid.labels)}
            if run["ablation"]:
                run["test_error"] = error_rate(bow_probs(model, test, n_classes), test.labels)
            runs.append(run)
record["runs"] = runs
write_json(ROOT / "runs" / "bow" / f"{dataset}.json", record)
