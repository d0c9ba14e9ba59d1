"""Stage check_params: python experiments/check_params.py

Depends on every key of params.yaml, so that any change to it (a misspelt or unknown key included, which no other
stage depends on) runs the suite's check of the whole file before any other stage: a bad key stops `dvc repro` and
`dvc exp run` with one line. Its output never changes, so a change that passes reruns nothing else."""

from common import ROOT, load_params

from ulmfit.io import write_text

load_params()
write_text(ROOT / "runs" / "params_checked", "params.yaml passed the suite's check (experiments/common.py)\n")
