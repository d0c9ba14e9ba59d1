"""Stage train_clf / curve: python experiments/train_clf.py DATASET VARIANT BUDGET SEED

VARIANT is a key of variants.yaml `clf`; BUDGET is a number of labelled examples or `max` (the
whole labelled pool of the profile)."""

import sys

from common import budget, clf_dir, clf_variant, data_dir, lm_dir, load_params, model_config

from ulmfit import steps

dataset, name, label_budget, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
p = load_params()
cfg, lm, keep, direction = clf_variant(p, dataset, name)
steps.train_clf(data_dir(dataset), clf_dir(dataset, name, label_budget, seed), cfg,
                lm_dir(dataset, lm, label_budget, seed) if lm else None, model_config(p), direction,
                budget(label_budget), p[dataset].get("balanced", True), seed, keep_model=keep)
