"""Stage finetune_lm: python experiments/finetune_lm.py DATASET VARIANT [BUDGET SEED]

VARIANT is a key of variants.yaml `lm`. BUDGET and SEED are given for the Figure 3 LMs that are
fine-tuned on the labelled examples of one classifier run only."""

import sys

from common import budget, data_dir, lm_dir, lm_variant, load_params, model_config, pretrained_dir

from ulmfit import steps

dataset, name = sys.argv[1:3]
label_budget, seed = (sys.argv[3], int(sys.argv[4])) if len(sys.argv) > 4 else ("max", 0)
p = load_params()
cfg, pretrained, text, direction = lm_variant(p, dataset, name)
steps.finetune_lm(data_dir(dataset), lm_dir(dataset, name, label_budget, seed), cfg,
                  pretrained_dir(pretrained) if pretrained else None, model_config(p), direction, text,
                  budget(label_budget), p[dataset].get("balanced", True), seed)
