"""Every profile validates; DVC lists each paper tier's whole grid, and only it, without error."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from common import check_variants, load_params, load_variants
from workspace import copy_repo, dvc_env, expected_stages

from ulmfit.cli import FASTAI_OUT
from ulmfit.config import ConfigError
from ulmfit.fastai_import import pretrain_import

ROOT = Path(__file__).resolve().parents[1]


TIERS = ["profiles/paper_main.yaml", "profiles/paper_tables.yaml", "profiles/paper.yaml"]  # README: (a), (b), (c)
STAGE_KEYS = ["datasets", "extra_datasets", "pretrained", "lm_variants", "clf_variants", "curve_budgets"]


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/tiny.yaml", *TIERS, "profiles/paper_smoke.yaml"])
def test_profile_validates(profile):
    p = load_params(ROOT / profile)
    assert len(p["seeds"]) >= (3 if profile == "params.yaml" else 1)


def workspace(tmp_path, profile):
    """A fresh clone's files (no dvc.lock) with `profile` as params.yaml."""
    copy_repo(tmp_path)
    shutil.copy(ROOT / profile, tmp_path / "params.yaml")
    (tmp_path / "dvc.lock").unlink(missing_ok=True)
    return tmp_path


# Tier (a): ULMFiT fwd and bwd (and their ensemble, in evaluate) on the six datasets, from fastai's models
MAIN = (["check_params", "calibrate", "prepare_corpus", "pretrain@fwd", "pretrain@bwd", "report"]
        + [f"{stage}@{d}" for d in ("imdb", "trec", "ag_news") for stage in ("prepare", "bow", "evaluate")]
        + [f"finetune_lm@{d}-{v}" for d in ("imdb", "trec", "ag_news") for v in ("fwd", "bwd")]
        + [f"train_clf@{d}-ulmfit" for d in ("imdb", "trec", "ag_news")]
        + [f"train_clf_from_same_name@{d}-bwd" for d in ("imdb", "trec", "ag_news")]
        + [f"{stage}@{d}" for d in ("dbpedia_14", "yelp_polarity", "yelp_review_full")
           for stage in ("prepare_extra", "evaluate_extra", "bow_extra")]
        + [f"{stage}@{d}-{v}" for d in ("dbpedia_14", "yelp_polarity", "yelp_review_full")
           for stage, v in (("finetune_lm_extra", "fwd"), ("finetune_lm_extra", "bwd"), ("train_clf_extra", "ulmfit"),
                            ("train_clf_extra_bwd", "bwd"))])


@pytest.mark.parametrize("profile", TIERS)
def test_each_paper_tier_plans_exactly_its_grid_and_every_dependency_is_made_or_tracked(tmp_path, profile):
    """`dvc repro --dry --force` lists every stage of the profile's grid and no other; every stage's dependency is a
    file in git or made by one of them (a profile without Figure 3 makes no runs/curve for the report to read)."""
    workspace(tmp_path, profile)
    # --force: list every stage; a plain --dry trips over missing upstream outputs (treeverse/dvc#9021)
    result = subprocess.run(["dvc", "repro", "--dry", "--force"], cwd=tmp_path, capture_output=True, text=True,
                            env=dvc_env(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    stages = re.findall(r"Running stage '([^']+)'", result.stdout)
    p = yaml.safe_load((ROOT / profile).read_text())
    expected = expected_stages(p)
    for prefix, count in expected.items():
        assert len([s for s in stages if s.startswith(prefix)]) == count, prefix
    assert {"check_params", "calibrate", "prepare_corpus", "report"} <= set(stages)
    assert len(stages) == len(set(stages)) == sum(expected.values()) + 4
    if profile.endswith("paper_main.yaml"):
        assert sorted(stages) == sorted(MAIN)

    repo = pytest.importorskip("dvc.repo").Repo(str(tmp_path))
    made = [str(o.def_path) for stage in repo.index.stages for o in stage.outs]
    for stage in repo.index.stages:
        for dep in (str(d.def_path) for d in stage.deps if not d.def_path.endswith(".yaml")):
            assert (tmp_path / dep).exists() or any(Path(o) == Path(dep) or Path(dep) in Path(o).parents
                                                   or Path(o) in Path(dep).parents for o in made), (stage.addressing, dep)


def test_the_tiers_differ_from_paper_yaml_only_in_the_stages_they_run_and_where_fwd_and_bwd_come_from():
    """So that the three cannot drift apart; (a) and (b) start from what `ulmfit fetch-fastai` writes by default."""
    paper = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    for profile in TIERS[:2]:
        tier = yaml.safe_load((ROOT / profile).read_text())
        assert tier.keys() == paper.keys()
        assert {k for k in paper if tier[k] != paper[k]} <= {*STAGE_KEYS, "pretrain_import"}, profile
        assert tier["pretrain_import"] == pretrain_import(FASTAI_OUT) and paper["pretrain_import"] == {}
    main, tables = (yaml.safe_load((ROOT / profile).read_text()) for profile in TIERS[:2])
    assert {k for k in paper if tables[k] != paper[k]} == {"pretrain_import"}  # (b): every stage of (c)
    assert main["datasets"] + main["extra_datasets"] == paper["datasets"] + paper["extra_datasets"]  # all six


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
    copy_repo(tmp_path)
    env = dvc_env(tmp_path)
    git = ["git", "-c", "user.email=test@example.com", "-c", "user.name=test"]
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
