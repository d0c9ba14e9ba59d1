"""Stage prepare: python experiments/prepare.py DATASET   (or `corpus` for the pretraining corpus)"""

import sys

from common import data_dir, load_params

from ulmfit import steps

name = sys.argv[1]
p = load_params()
if name == "corpus":
    steps.prepare(p["corpus"]["name"], data_dir("corpus"), max_words=p["corpus"].get("max_words", 0), **p["data"])
else:
    steps.prepare(name, data_dir(name), **{**p["data"], **p[name]["prepare"]})
