"""Stage pretrain: python experiments/pretrain.py NAME   (a key of variants.yaml `pretrain`)"""

import sys

from common import data_dir, direction_of_pretrained, load_params, model_config, pretrained_dir, resume_file

from ulmfit import steps
from ulmfit.config import LMConfig, from_dict

name = sys.argv[1]
p = load_params()
steps.pretrain(data_dir("corpus"), pretrained_dir(name), model_config(p, name),
               from_dict(LMConfig, p["pretrain"], "params.yaml: pretrain"), direction_of_pretrained(name), seed=0,
               resume=resume_file("pretrain", name))
