"""Stages scaling_pretrain, scaling_finetune_lm and scaling_clf: python experiments/scaling.py STEP LEVEL

The compute-scaling study (params `scaling`): ULMFiT forward on scaling.dataset at its ablation budget, its language
models trained on LEVEL x the tokens the profile's own pretraining and LM fine-tuning train on (the profile itself is
level 1; the report reads it from its own runs). Below 1 a model trains on that fraction of its text (max_tokens: a
seeded subset of whole documents), above 1 for LEVEL x the epochs. STEP: pretrain (models/scaling/LEVEL/pretrained),
finetune_lm (models/scaling/LEVEL/lm) or clf (runs/scaling/LEVEL/SEED, each seed with its test error in test.json)."""

import sys

from common import ROOT, clf_variant, data_dir, lm_variant, load_params, model_config, resume_file, scaled

from ulmfit import steps
from ulmfit.config import LMConfig, from_dict
from ulmfit.io import read_json

step, level = sys.argv[1:3]
p = load_params()
dataset = p["scaling"]["dataset"]
models, runs = ROOT / "models" / "scaling" / level, ROOT / "runs" / "scaling" / level


def text_tokens(folder, splits):
    info = read_json(folder / "info.json")
    return sum(info[s]["tokens"] for s in splits if s in info)


if step == "pretrain":
    cfg = scaled(from_dict(LMConfig, p["pretrain"], "params.yaml: pretrain"), float(level),
                 text_tokens(data_dir("corpus"), ["train"]))
    steps.pretrain(data_dir("corpus"), models / "pretrained", model_config(p, "fwd"), cfg, "fwd", seed=0,
                   resume=resume_file("scaling", level, "pretrain"))
elif step == "finetune_lm":
    cfg, _, text, direction = lm_variant(p, dataset, "fwd")
    cfg = scaled(cfg, float(level), text_tokens(data_dir(dataset), ["train", "unlabelled"]))
    steps.finetune_lm(data_dir(dataset), models / "lm", cfg, models / "pretrained", model_config(p), direction, text,
                      resume=resume_file("scaling", level, "lm"))
else:
    cfg, _, _, direction = clf_variant(p, dataset, "ulmfit")
    for seed in p["seeds"]:
        steps.train_clf(data_dir(dataset), runs / str(seed), cfg, models / "lm", model_config(p), direction,
                        p[dataset]["budget"], p[dataset]["balanced"], seed, keep_model=True,
                        resume=resume_file("scaling", level, "clf", seed))
        steps.evaluate(data_dir(dataset), {"ulmfit": runs / str(seed)}, runs / str(seed) / "test.json")
