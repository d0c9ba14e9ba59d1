"""A temporary copy of the repository for the tests that run `dvc`, the environment they run it in, and the stages
`dvc repro` runs for a profile."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from common import GROUPS

ROOT = Path(__file__).resolve().parents[1]


def copy_repo(dest):
    """The repository's tracked files, copied into `dest` (a git repository of its own, as a fresh clone is)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def dvc_env(work, **extra):
    """The venv's bin first, so `dvc` and the stages' `python` resolve without an activated venv, as in CI; the copy
    first on PYTHONPATH, so that the stages import the copy's ulmfit, not the one the venv has installed (an editable
    install points at the checkout it was made from, which may be another worktree); no ULMFIT_DATA, so that the
    stages read the mirror the copy's params name."""
    env = {k: v for k, v in os.environ.items() if k != "ULMFIT_DATA"}
    return dict(env, DVC_NO_ANALYTICS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                PYTHONPATH=str(work), **extra)


def expected_stages(p):
    """Stage name prefix -> how many stages of it `dvc repro` runs for params `p`."""
    n, extra, budgets = len(p["datasets"]), len(p["extra_datasets"]), len(p["curve_budgets"])
    expected = {"prepare@": n, "prepare_extra@": extra, "pretrain@": len(p["pretrained"]), "bow@": n, "bow_extra@": extra,
                "evaluate@": n, "evaluate_extra@": extra, "finetune_lm_extra@": extra * 2, "train_clf_extra@": extra,
                "train_clf_extra_bwd@": extra, "curve@": n * budgets, "curve_supervised@": n * budgets,
                "curve_scratch@": n * budgets, **{f"scaling_{step}@": len(p["scaling"]["levels"])
                                                  for step in ("pretrain", "finetune_lm", "clf")}}
    for key, stage in (("lm_variants", "finetune_lm"), ("clf_variants", "train_clf")):
        for i, group in enumerate(GROUPS[key]):  # the first group's stages have the plain name
            expected[f"{stage}_{group}@" if i else f"{stage}@"] = n * len(p[key][group])
    return expected
