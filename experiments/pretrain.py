"""Stage pretrain: python experiments/pretrain.py NAME   (a key of variants.yaml `pretrain`)

Pretrains on the prepared corpus, or, when params `pretrain_import` names fastai weights for
NAME, converts those instead (fastai's published WT103 models)."""

import sys
from pathlib import Path

from common import data_dir, direction_of_pretrained, load_params, model_config, pretrained_dir, resume_file

from ulmfit import steps
from ulmfit.config import ConfigError, LMConfig, from_dict

name = sys.argv[1]
p = load_params()
if name in p["pretrain_import"]:
    from ulmfit.fastai_import import import_fastai

    source = p["pretrain_import"][name]
    missing = [path for path in source.values() if not Path(path).is_file()]
    if missing:
        raise ConfigError(f"params pretrain_import.{name} names {', '.join(missing)}, which is missing: run `ulmfit "
                          "fetch-fastai` first (README: Paper profile)")
    import_fastai(source["weights"], source["vocab"], pretrained_dir(name), direction_of_pretrained(name))
    sys.exit()
steps.pretrain(data_dir("corpus"), pretrained_dir(name), model_config(p, name),
               from_dict(LMConfig, p["pretrain"], "params.yaml: pretrain"), direction_of_pretrained(name), seed=0,
               resume=resume_file("pretrain", name))
