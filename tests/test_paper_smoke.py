"""The paper's pipeline end to end on a CPU: the real `dvc repro` on profiles/paper_smoke.yaml, which is
profiles/paper.yaml with only data sizes, epochs, seeds, curve budgets and workers reduced (checked here key by key),
in a temporary copy of the repository. Its mirror holds small Parquet files with each hub dataset's schema
(tests/test_hub.py's writers): IMDb, TREC-6 and AG, the three extra datasets of the main results table (DBpedia,
Yelp-bi, Yelp-full) and WikiText-103 for pretraining; the forward language model is imported from fastai-format
weights of the paper's shape through `pretrain_import` (tests/test_fastai_import.py's writers).

The check of the profile's keys runs with the suite; the run itself, 172 stages at the paper's model sizes, takes
about half an hour on 2 CPU cores and runs with `pytest -m slow` (pyproject.toml leaves it out of a plain `pytest`)."""

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from common import listed
from test_fastai_import import fastai_state_dict, write_fastai
from test_hub import HUB, WIKI, WORDS, features, rows
from workspace import copy_repo, dvc_env, expected_stages

from ulmfit import data as D
from ulmfit.text import SPECIAL_TOKENS

ROOT = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
SMOKE = yaml.safe_load((ROOT / "profiles" / "paper_smoke.yaml").read_text())
DATASETS = PAPER["datasets"] + PAPER["extra_datasets"]
# The keys paper_smoke.yaml may set otherwise than paper.yaml: data sizes, epochs or steps, seeds, curve budgets and
# workers (issue 20). Every other key, model sizes and dropouts, variants, rates, max_len and patience included, is
# the paper's.
REDUCED = ["notes", "seeds", "curve_budgets", "data.workers", "corpus.max_words", "clf.epochs",
           *(f"{section}.{key}" for section in ("pretrain", "finetune_lm")
             for key in ("epochs", "max_tokens", "max_valid_tokens")),
           *(f"{d}.prepare.{cap}" for d in DATASETS for cap in ("max_train", "max_valid", "max_test", "max_unlabelled")),
           *(f"{d}.{section}.epochs" for d in DATASETS for section in ("finetune_lm", "clf"))]
NAMES = ["IMDb", "TREC-6", "AG", "DBpedia", "Yelp-bi", "Yelp-full"]


def without(profile, paths):
    """A copy of `profile` without the dotted key `paths`."""
    out = copy.deepcopy(profile)
    for path in paths:
        *parents, key = path.split(".")
        node = out
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(key, None)
    return out


def test_the_smoke_profile_is_the_paper_profile_but_for_sizes_epochs_seeds_budgets_and_workers():
    assert without(SMOKE, REDUCED) == without(PAPER, REDUCED)
    assert SMOKE["model"] == {} and SMOKE["clf"]["max_len"] == 1400 and SMOKE["clf"]["patience"] == 5


@pytest.mark.parametrize("edit", [
    lambda p: p["model"].update(emb_size=16),
    lambda p: p["clf"].update(batch_size=16),
    lambda p: p["pretrain"].update(bptt=20),
    lambda p: p["clf"].pop("patience"),
    lambda p: p["extra_datasets"].pop(),
    lambda p: p["clf_variants"]["from_same_name"].remove("vanilla"),
    lambda p: p["trec"]["prepare"].update(min_freq=1),
    lambda p: p["imdb"].update(budget=10),
])
def test_any_other_change_to_the_smoke_profile_is_caught(edit):
    changed = copy.deepcopy(SMOKE)
    edit(changed)
    assert without(changed, REDUCED) != without(PAPER, REDUCED)


def write_mirror(mirror):
    """Every dataset of the paper profile with the hub's schema: enough training rows for a validation example of
    every class, and WikiText's articles repeated into a corpus of a few thousand tokens."""
    import datasets

    rng = np.random.default_rng(0)
    with D.quiet_datasets():
        for name in HUB:
            for split in D.spec(name).splits:
                if name.startswith("wikitext"):
                    columns = {"text": WIKI[split] * {"train": 40, "validation": 4, "test": 1}[split]}
                else:
                    k = len(D.spec(name).classes)
                    columns = rows(name, split, rng, max(60, 6 * k) if split == "train" else None)
                path = mirror / D.spec(name).mirror_dir / f"{split}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                datasets.Dataset.from_dict(columns, features=features(name)).to_parquet(path)


def write_fastai_fwd(folder):
    """fastai-format weights of the paper's shape (400/1150, 3 layers) over a small vocabulary: (weights, itos)."""
    itos = SPECIAL_TOKENS + sorted({w.lower() for w in WORDS}) + [".", "?", "the_fastai_only_token"]
    folder.mkdir()
    return write_fastai(folder, fastai_state_dict(1150, vocab=len(itos), emb_size=400), itos=itos)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper-smoke")
    work, mirror = copy_repo(tmp / "repo"), tmp / "mirror"
    write_mirror(mirror)
    weights, itos = write_fastai_fwd(tmp / "fastai")
    params = copy.deepcopy(SMOKE)
    params["data"]["mirror"] = str(mirror)
    params["pretrain_import"] = {"fwd": {"weights": str(weights), "vocab": str(itos)}}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / "dvc.lock").unlink(missing_ok=True)
    shutil.rmtree(work / "reports")  # the committed CPU run's report
    env = dvc_env(work, HF_HUB_OFFLINE="1")
    subprocess.run(["dvc", "config", "--local", "core.no_scm", "true"], cwd=work, check=True, env=env)
    result = subprocess.run(["dvc", "repro"], cwd=work, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    yield work, params, result, weights
    shutil.rmtree(tmp)  # about 10 GB: the models and their copies in the DVC cache


def model_file(path):
    return torch.load(path / "model.pt", map_location="cpu", weights_only=False)


@pytest.mark.slow
def test_every_stage_of_the_paper_grid_ran(run):
    work, params, result, _ = run
    ran = re.findall(r"Running stage '([^']+)'", result.stdout)
    expected = expected_stages(params)
    for prefix, count in expected.items():
        assert len([s for s in ran if s.startswith(prefix)]) == count, prefix
    assert {"check_params", "calibrate", "prepare_corpus", "report"} <= set(ran)
    assert len(ran) == len(set(ran)) == 4 + sum(expected.values())


@pytest.mark.slow
def test_models_have_the_papers_shape_and_the_forward_lm_came_from_fastai_weights(run):
    work, params, _, weights = run
    lms = list(work.glob("models/**/model.pt"))
    n, extra = len(params["datasets"]), len(params["extra_datasets"])
    assert len(lms) == len(params["pretrained"]) + n * len(listed(params, "lm_variants")) + 2 * extra
    for path in lms + list(work.glob("runs/**/model.pt")):
        cfg = model_file(path.parent)["model_config"]
        assert (cfg["emb_size"], cfg["hidden_size"], cfg["n_layers"]) == (400, 1150, 3), path
    fwd = model_file(work / "models" / "pretrained" / "fwd")
    assert fwd["meta"] == {"direction": "fwd", "source": "fastai", "weights": str(weights)}
    vanilla = model_file(work / "models" / "pretrained" / "vanilla")["model_config"]
    assert {vanilla[k] for k in ("output_p", "hidden_p", "input_p", "embed_p", "weight_p")} == {0.0}  # Table 5
    corpus = json.loads((work / "data" / "prepared" / "corpus" / "info.json").read_text())
    assert corpus["dataset"] == "wikitext-103" and corpus["train"]["docs"] == 3 * 40
    for name in ("bwd", "vanilla"):
        assert json.loads((work / "models" / "pretrained" / name / "metrics.json").read_text())["history"]
    # the fine-tuned forward LMs start from the imported weights: the LSTM layers are fastai's before training
    lm_none = model_file(work / "models" / "lm" / "trec" / "lm_none")["state_dict"]
    assert torch.equal(lm_none["encoder.rnns.1.weight_hh_l0_raw"], fwd["state_dict"]["encoder.rnns.1.weight_hh_l0_raw"])


@pytest.mark.slow
def test_classifiers_read_bpt3c_chunks_of_70_up_to_1400_tokens(run):
    work, _, _, _ = run
    kept = [model_file(path.parent) for path in (work / "runs").glob("**/model.pt")]
    assert len(kept) >= 2 * len(DATASETS)  # ULMFiT fwd and bwd of every dataset, and the curve's ULMFiT runs
    assert {(obj["bptt"], obj["max_len"]) for obj in kept} == {(70, 1400)}


@pytest.mark.slow
def test_early_stopping_chooses_on_the_selection_split_and_patience_ends_runs(run):
    work, params, _, _ = run
    patience = params["clf"]["patience"]
    stopped = []
    for path in (work / "runs").glob("*/*/*/*/metrics.json"):
        m = json.loads(path.read_text())
        epochs = (params[path.parents[2].name]["clf"] or {}).get("epochs", params["clf"]["epochs"])  # the dataset's
        checks = [h["select_error"] for h in m["history"] if "select_error" in h]
        if not checks:  # ULMFiT's recipes and the LM variants: every epoch, scored on the validation split
            continue
        assert m["n_select"] > 0 and len(checks) == len(m["history"])  # checked every epoch: 7 epochs / 10 rounds to 1
        best = int(np.argmin(checks))
        if len(m["history"]) < epochs:
            assert len(checks) - 1 - best == patience, path  # stopped at the patience-th check without improvement
            stopped.append(path)
        assert m["best_epoch"] == best + 1
    assert stopped, "no run stopped early: patience was not exercised"


@pytest.mark.slow
def test_every_curve_point_ran_on_its_budget(run):
    work, params, _, _ = run
    for d in params["datasets"]:
        for variant in ("ulmfit", "supervised", "scratch"):
            for budget in params["curve_budgets"]:
                [path] = (work / "runs" / "curve" / d / f"{variant}-{budget}").glob("*/metrics.json")
                assert json.loads(path.read_text())["n_train"] == budget, path


@pytest.mark.slow
def test_the_report_renders_every_section_table_5_and_the_six_dataset_main_table(run):
    work, params, _, _ = run
    report = (work / "reports" / "index.md").read_text()
    titles = re.findall(r"^## (.+)$", report, re.M)
    for title in ("This profile", "Findings", "Data", "Main results", "Table 4", "Table 5", "Table 6", "Table 7",
                  "Directions", "Figure 3", "Language models", "Convergence", "Cost"):
        assert any(t.startswith(title) for t in titles), title
    main = report.split("## Main results")[1].split("\n## ")[0]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in main.splitlines()
            if line.startswith("| ") and not line.startswith("| Dataset")}
    assert list(rows) == NAMES
    for name, cells in rows.items():
        assert all(re.fullmatch(r"\d+\.\d\d", c) for c in cells[:4]), (name, cells)  # fwd, bwd, ensemble, bow
    table5 = report.split("## Table 5")[1].split("\n## ")[0]
    assert "Not run" not in table5
    for label in ("Vanilla LM", "AWD-LSTM LM"):
        [line] = [x for x in table5.splitlines() if x.startswith(f"| {label} |")]
        ours = line.split("|")[2:-1:3]  # (ours) of IMDb, TREC-6, AG
        assert len(ours) == len(params["datasets"]) and all(re.fullmatch(r" \d+\.\d\d ", c) for c in ours), line
    for figure in ("figure3.png", "lm_pretraining.png", "lm_finetuning.png"):
        assert (work / "reports" / "figures" / figure).stat().st_size > 1000
    metrics = json.loads((work / "reports" / "metrics.json").read_text())
    assert all(metrics[d]["test_error_ensemble"] is not None for d in DATASETS)
