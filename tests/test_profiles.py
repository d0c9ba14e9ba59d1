"""Every profile validates, and DVC lists the paper profile's whole grid without error."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from common import check_variants, load_params, load_variants
from workspace import copy_repo, dvc_env, expected_stages

from ulmfit.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/tiny.yaml", "profiles/paper.yaml",
                                     "profiles/paper_smoke.yaml"])
def test_profile_validates(profile):
    p = load_params(ROOT / profile)
    assert len(p["seeds"]) >= (3 if profile == "params.yaml" else 1)


def test_paper_profile_dry_run_lists_the_whole_grid(tmp_path):
    copy_repo(tmp_path)
    shutil.copy(ROOT / "profiles" / "paper.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.lock").unlink(missing_ok=True)
    # --force: list every stage; a plain --dry trips over missing upstream outputs (treeverse/dvc#9021)
    result = subprocess.run(["dvc", "repro", "--dry", "--force"], cwd=tmp_path, capture_output=True, text=True,
                            env=dvc_env(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    stages = re.findall(r"Running stage '([^']+)'", result.stdout)
    p = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    for prefix, count in expected_stages(p).items():
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
