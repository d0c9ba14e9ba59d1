"""Stage finetune_lm: python experiments/finetune_lm.py DATASET VARIANT   (VARIANT: variants.yaml `lm`)"""

import sys

from common import data_dir, lm_dir, lm_variant, load_params, model_config, pretrained_dir, resume_file

from ulmfit import steps

dataset, name = sys.argv[1:3]
p = load_params()
cfg, pretrained, text, direction = lm_variant(p, dataset, name)
steps.finetune_lm(data_dir(dataset), lm_dir(dataset, name), cfg, pretrained_dir(pretrained) if pretrained else None,
                  model_config(p), direction, text, resume=resume_file("lm", dataset, name))
