"""Stages train_clf and curve: python experiments/train_clf.py DATASET VARIANT [BUDGET]

Trains classifier VARIANT (a key of variants.yaml `clf`) once per seed on BUDGET labelled
examples (default: the dataset's ablation budget), each seed into OUT/<seed>/. The supervised
variant first fine-tunes its own language model on exactly that seed's labelled examples."""

import sys
import tempfile

from common import (
    clf_variant,
    data_dir,
    lm_dir,
    lm_variant,
    load_params,
    model_config,
    pretrained_dir,
    resume_file,
    run_dir,
)

from ulmfit import steps

dataset, name = sys.argv[1:3]
curve_budget = int(sys.argv[3]) if len(sys.argv) > 3 else None
p = load_params()
budget = p[dataset]["budget"] if curve_budget is None else curve_budget
balanced = p[dataset]["balanced"]
cfg, lm, keep, direction = clf_variant(p, dataset, name)
out = run_dir(dataset, name, curve_budget)
for seed in p["seeds"]:
    with tempfile.TemporaryDirectory() as own_lm:
        lm_record = None
        if lm == "supervised":
            lm_cfg, pretrained, text, _ = lm_variant(p, dataset, lm)
            lm_record = steps.finetune_lm(data_dir(dataset), own_lm, lm_cfg, pretrained_dir(pretrained), model_config(p),
                                          direction, text, budget, balanced, seed,
                                          resume=resume_file("lm", out.name, dataset, seed))
        steps.train_clf(data_dir(dataset), out / str(seed), cfg,
                        own_lm if lm == "supervised" else lm_dir(dataset, lm) if lm else None, model_config(p),
                        direction, budget, balanced, seed, keep_model=keep,
                        resume=resume_file("clf", out.parent.name, out.name, seed), own_lm=lm_record)
