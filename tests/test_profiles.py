"""Every profile validates, and DVC lists the paper profile's whole grid without error."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from common import load_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/tiny.yaml", "profiles/paper.yaml"])
def test_profile_validates(profile):
    p = load_params(ROOT / profile)
    assert len(p["seeds"]) >= (3 if profile == "params.yaml" else 1)


def test_paper_profile_dry_run_lists_the_whole_grid(tmp_path):
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "profiles" / "paper.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.lock").unlink(missing_ok=True)
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    # --force: list every stage; a plain --dry trips over missing upstream outputs (treeverse/dvc#9021)
    result = subprocess.run(["dvc", "repro", "--dry", "--force"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    stages = re.findall(r"Running stage '([^']+)'", result.stdout)
    p = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    n, extra = len(p["datasets"]), len(p["extra_datasets"])
    expected = {
        "prepare@": n, "prepare_extra@": extra, "pretrain@": len(p["pretrained"]),
        "finetune_lm@": n * len(p["lm_variants"]), "finetune_lm_extra@": extra * 2,
        "train_clf@": n * len(p["clf_variants"]), "train_clf_extra@": extra * 2,
        "curve@": n * 3 * len(p["curve_budgets"]), "bow@": n, "evaluate@": n, "evaluate_extra@": extra,
    }
    for prefix, count in expected.items():
        assert len([s for s in stages if s.startswith(prefix)]) == count, prefix
    assert "report" in stages and "prepare_corpus" in stages
