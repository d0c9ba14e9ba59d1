"""Every profile validates, and DVC lists the paper profile's whole grid without error."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from common import GROUPS, check_variants, load_params, load_variants

from ulmfit.config import ConfigError

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
    expected = {"prepare@": n, "prepare_extra@": extra, "pretrain@": len(p["pretrained"]), "bow@": n, "evaluate@": n,
                "evaluate_extra@": extra, "finetune_lm_extra@": extra * 2, "train_clf_extra@": extra,
                "train_clf_extra_bwd@": extra, "curve@": n * len(p["curve_budgets"]),
                "curve_supervised@": n * len(p["curve_budgets"]), "curve_scratch@": n * len(p["curve_budgets"])}
    for key, stage in (("lm_variants", "finetune_lm"), ("clf_variants", "train_clf")):
        for i, group in enumerate(GROUPS[key]):  # the first group's stages have the plain name
            expected[f"{stage}_{group}@" if i else f"{stage}@"] = n * len(p[key][group])
    for prefix, count in expected.items():
        assert len([s for s in stages if s.startswith(prefix)]) == count, prefix
    assert "report" in stages and "prepare_corpus" in stages


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["clf_variants"]["from_fwd"].append("bwd"), "clf_variants.from_fwd lists bwd, which starts from bwd; "
                                                             "list it under clf_variants.from_same_name"),
    (lambda p: p["lm_variants"]["from_same_name"].remove("bwd"), "clf_variants.from_same_name lists bwd, which starts "
                                                                  "from bwd; add bwd to lm_variants"),
    (lambda p: p["lm_variants"]["from_same_name"].append("lm_full"), "lm_variants.from_same_name lists lm_full, which "
                                                                      "starts from fwd; list it under lm_variants.from_fwd"),
    (lambda p: p["clf_variants"].update(from_fwd=["ulmfit", "scratch"]), "list it under clf_variants.from_nothing"),
    (lambda p: p.update(clf_variants=["ulmfit", "bwd"]), "clf_variants must be a mapping"),
])
def test_a_variant_outside_the_group_of_the_model_it_reads_is_refused(tmp_path, edit, message):
    """dvc.yaml's stage groups depend on one model each: a variant listed in the wrong group would read a model its
    stage does not depend on."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(p)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_params(tmp_path / "params.yaml")


def test_a_variant_starting_from_a_differently_named_model_other_than_fwd_is_refused():
    """dvc.yaml reads fwd or a model of the variant's own name; an LM bwd2 from pretrained bwd has no stage group."""
    p = load_params()
    variants = load_variants()
    variants["lm"]["bwd2"] = {**variants["lm"]["bwd"], "pretrained": "bwd"}
    p["lm_variants"]["from_same_name"].append("bwd2")
    with pytest.raises(ConfigError, match=re.escape("lm_variants.from_same_name lists bwd2, which starts from bwd under "
                                                    "another name; dvc.yaml has no stage group for that")):
        check_variants(p, variants, "params.yaml")


def test_the_readmes_experiment_table_shows_what_varies_readably(tmp_path):
    """`dvc exp show --md --only-changed` (README, Running variants in parallel): the params that vary as plain cells,
    not hundreds of columns squeezed into '…' off a terminal."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    for name in filter(None, files.split("\0")):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    git = ["git", "-c", "user.email=test@example.com", "-c", "user.name=test"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(git + ["add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-qm", "base"], cwd=tmp_path, check=True)
    params = (tmp_path / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(params.replace("seeds: [0, 1, 2]", "seeds: [3]", 1))
    assert "dvc exp show --md --only-changed" in (ROOT / "README.md").read_text()
    shown = subprocess.run(["dvc", "exp", "show", "--md", "--only-changed"], cwd=tmp_path, capture_output=True,
                           text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in shown.stdout.splitlines() if line.startswith("|")]
    assert rows[0] == ["Experiment", "Created", "seeds"] and "…" not in shown.stdout
    assert ["workspace", "-", "[3]"] in rows and any(r[2] == "[0, 1, 2]" for r in rows)
