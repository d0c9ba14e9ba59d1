"""End to end: the real `dvc repro` on the tiny profile, in a temporary copy of the repository, on a CPU without a bf16
LSTM kernel (oneDNN capped at AVX2, as on an AVX2-only CPU, whatever this machine has): `precision: auto` runs fp32."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from common import listed
from workspace import copy_repo, dvc_env

ROOT = Path(__file__).resolve().parents[1]


def env(work):
    return dvc_env(work, ONEDNN_MAX_CPU_ISA="AVX2")


def mirror():
    for candidate in (os.environ.get("ULMFIT_DATA"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "trec" / "train.parquet").exists():
            return Path(candidate).resolve()
    return None


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = mirror()
    if data is None:
        pytest.skip("no local data mirror (set ULMFIT_DATA to a directory holding <dataset>/<split>.parquet)")
    work = copy_repo(tmp_path_factory.mktemp("repo"))
    params = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    params["data"]["mirror"] = str(data)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stale in ("dvc.lock", "reports"):
        path = work / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    subprocess.run(["dvc", "config", "--local", "core.no_scm", "true"], cwd=work, check=True, env=env(work))
    result = subprocess.run(["dvc", "repro"], cwd=work, capture_output=True, text=True, env=env(work))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, params, result


def test_every_stage_ran(run):
    work, params, result = run
    ran = set(re.findall(r"Running stage '([^']+)'", result.stdout))
    assert {"prepare_corpus", "prepare@trec", "pretrain@fwd", "pretrain@bwd", "report", "bow@trec", "evaluate@trec"} <= ran
    assert len([s for s in ran if s.startswith("train_clf")]) == len(listed(params, "clf_variants"))
    assert len([s for s in ran if s.startswith("curve")]) == 3 * len(params["curve_budgets"])
    assert (work / "dvc.lock").exists()


def test_every_table_and_figure_exists_and_every_cell_came_from_this_run(run):
    work, params, _ = run
    report = (work / "reports" / "index.md").read_text()
    for title in ("Main results", "Table 4", "Table 6", "Table 7", "Figure 3", "Language models", "Cost"):
        assert f"## {title}" in report
    for figure in ("figure3.png", "figure3_trec6.png", "lm_pretraining.png", "lm_finetuning.png"):
        assert (work / "reports" / "figures" / figure).stat().st_size > 1000
    assert "(figures/lm_pretraining.png)" in report and "(figures/lm_finetuning.png)" in report
    runs = pd.read_csv(work / "reports" / "runs.csv")
    metrics = {}
    for path in (work / "runs" / "ablation" / "trec").glob("*/*/metrics.json"):
        metrics[f"{path.parent.parent.name}-{path.parent.name}"] = json.loads(path.read_text())
    curve = list((work / "runs" / "curve" / "trec").glob("*/*/metrics.json"))
    n_clf = len(listed(params, "clf_variants"))
    assert len(metrics) == n_clf * len(params["seeds"])
    assert len(runs) == len(metrics) + len(curve) == (n_clf + 3 * len(params["curve_budgets"])) * len(params["seeds"])
    for row in runs[runs.kind == "ablation"].itertuples():
        assert row.valid_error == metrics[f"{row.variant}-{row.seed}"]["valid_error"]
    # every cell of ours in the ablation tables is the mean of this run's seeds
    tables = yaml.safe_load((work / "experiments" / "variants.yaml").read_text())["tables"]
    for key in ("table4", "table6", "table7"):
        section = report.split(tables[key]["title"])[1].split("\n## ")[0]
        cells = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in section.splitlines() if line.startswith("| ")}
        for label, variant in tables[key]["rows"]:
            errors = [metrics[f"{variant}-{s}"]["valid_error"] * 100 for s in params["seeds"]]
            assert cells[label].startswith(f"{sum(errors) / len(errors):.2f}"), (key, label, cells[label])
    reported = json.loads((work / "reports" / "metrics.json").read_text())
    ulmfit = [metrics[f"ulmfit-{s}"]["valid_error"] for s in params["seeds"]]
    assert reported["trec"]["valid_error_ulmfit"] == pytest.approx(sum(ulmfit) / len(ulmfit), abs=1e-5)
    evaluation = json.loads((work / "runs" / "evaluate" / "trec" / "summary.json").read_text())
    fwd = [evaluation[str(s)]["models"]["ulmfit"]["test_error"] for s in params["seeds"]]
    assert reported["trec"]["test_error_fwd"] == pytest.approx(sum(fwd) / len(fwd))
    assert "–" not in report.split("## Main results")[1].split("##")[0].split("\n")[4].split("|")[2]
    bow = json.loads((work / "runs" / "bow" / "trec.json").read_text())["runs"]
    bow_test = [r["test_error"] for r in bow if r["ablation"]]
    assert reported["trec"]["test_error_bow"] == pytest.approx(sum(bow_test) / len(bow_test))
    assert reported["trec"]["test_error_ensemble"] is not None


def test_early_stopping_selects_on_its_own_split_and_the_report_checks_the_findings(run):
    work, params, _ = run
    runs = pd.read_csv(work / "reports" / "runs.csv")
    stops = runs[runs.variant.isin(["scratch", "full", "last", "freez"])]
    assert (stops.n_select > 0).all() and (runs[runs.variant == "ulmfit"].n_select == 0).all()
    for path in (work / "runs" / "ablation" / "trec" / "scratch").glob("*/metrics.json"):
        history = json.loads(path.read_text())["history"]
        assert any("select_error" in h for h in history) and not any("valid_error" in h for h in history)
    report = (work / "reports" / "index.md").read_text()
    reported = json.loads((work / "reports" / "metrics.json").read_text())
    cells = reported["directions"]["cells"]
    assert cells == 12 * len(params["datasets"])  # Table 6: 3 rows, Table 7: 9 rows besides ULMFiT's
    assert f"of the {cells} cells" in report and "## Findings" in report
    assert reported["findings"]["checked"] > 0


def test_cost_is_normalized_by_the_calibration_of_the_same_run(run):
    work, _, _ = run
    calibration = json.loads((work / "runs" / "calibration.json").read_text())
    cost = json.loads((work / "reports" / "metrics.json").read_text())["cost"]
    assert cost["calibration_tokens_per_s"] == pytest.approx(calibration["tokens_per_s"], abs=0.1)
    expected = cost["elapsed_minutes"] * calibration["tokens_per_s"] / calibration["reference_tokens_per_s"]
    assert cost["normalized_minutes"] == pytest.approx(expected, abs=0.02)
    report = (work / "reports" / "index.md").read_text()
    assert "Normalized minutes" in report
    # no bf16 LSTM kernel under the cap: every run and the calibration computed in fp32, and the report says so
    assert (cost["precision"], calibration["precision"]) == ("fp32", "fp32") and calibration["device_name"] in report
    assert "Precision (`auto` unless params set it): fp32 on " in report
    own = [json.loads(path.read_text())["own_lm"] for path in (work / "runs").glob("*/trec/supervised*/*/metrics.json")]
    assert own and all(lm["wall_s"] > 0 for lm in own)  # a supervised run's own LM fine-tuning counts as stage work
    assert f"| finetune_lm (own LM of a supervised run) | {len(own)} | " in (work / "reports" / "index.md").read_text()


def test_the_compute_scaling_study_ran_every_level_and_the_report_fits_it(run):
    """The tiny profile's study: its levels' stages, each LM's counted FLOPs, level 1 read from the default runs."""
    work, params, result = run
    levels = params["scaling"]["levels"]
    ran = set(re.findall(r"Running stage '([^']+)'", result.stdout))
    assert {f"scaling_{step}@{level}" for step in ("pretrain", "finetune_lm", "clf") for level in levels} <= ran
    flops = {}
    for level in levels:
        pre, lm = (json.loads((work / "models" / "scaling" / str(level) / k / "metrics.json").read_text())
                   for k in ("pretrained", "lm"))
        flops[level] = pre["train_flops"] + lm["train_flops"]
        for seed in params["seeds"]:
            test = json.loads((work / "runs" / "scaling" / str(level) / str(seed) / "test.json").read_text())
            assert 0 <= test["models"]["ulmfit"]["test_error"] <= 1
    default = sum(json.loads(path.read_text())["train_flops"] for path in
                  (work / "models" / "pretrained" / "fwd" / "metrics.json", work / "models" / "lm" / "trec" / "fwd" / "metrics.json"))
    assert flops[min(levels)] < default < flops[max(levels)]  # below 1 less text, above 1 more epochs
    assert flops[2] == pytest.approx(2 * default, rel=0.01)
    frame = pd.read_csv(work / "reports" / "scaling.csv")
    assert sorted(frame.level.unique()) == sorted([1, *levels]) and len(frame) == (len(levels) + 1) * len(params["seeds"])
    report = (work / "reports" / "index.md").read_text()
    assert "## Compute scaling" in report and (work / "reports" / "figures" / "scaling.png").stat().st_size > 1000
    cost = json.loads((work / "reports" / "metrics.json").read_text())["cost"]
    assert cost["scaling_minutes"] > 0 and "scaling_pretrain" in report.split("## Cost")[1]


def test_metrics_and_plots_commands_work(run):
    work, _, _ = run
    shown = subprocess.run(["dvc", "metrics", "show", "--json"], cwd=work, capture_output=True, text=True, env=env(work))
    assert shown.returncode == 0 and "valid_error_ulmfit" in shown.stdout
    plots = subprocess.run(["dvc", "plots", "show", "-o", str(work / "plots_html")], cwd=work, capture_output=True,
                           text=True, env=env(work))
    assert plots.returncode == 0, plots.stderr
    assert (work / "plots_html" / "index.html").exists()
    steps = pd.read_csv(work / "models" / "pretrained" / "fwd" / "dvclive" / "plots" / "metrics" / "train_loss.tsv", sep="\t")
    assert len(steps) > 50  # a curve over the one epoch, not a single point


def test_repro_again_does_nothing(run):
    work, _, _ = run
    status = subprocess.run(["dvc", "status"], cwd=work, capture_output=True, text=True, env=env(work))
    assert status.returncode == 0 and "up to date" in status.stdout.lower()


def test_a_bad_params_file_stops_repro_at_the_check_and_outputs_come_back_with_checkout(run):
    """Runs last: it breaks params.yaml and puts it back. An unknown key, which no stage depends on, and a missing
    dataset section stop `dvc repro` at check_params before any other stage (and DVC) touches an output; a single
    stage run with -s skips that check, so DVC removes its outputs first, and `dvc checkout` brings them back."""
    work, _, _ = run
    params = (work / "params.yaml").read_text()
    prepared = work / "data" / "prepared" / "trec"
    before = sorted(p.name for p in prepared.iterdir())
    broken = {"unknown key(s) 'clf_epochs'": params + "clf_epochs: 1\n",
              "section 'trec' lacks": yaml.safe_dump({**yaml.safe_load(params), "trec": {}}, sort_keys=False)}
    try:
        for message, text in broken.items():
            (work / "params.yaml").write_text(text)
            result = subprocess.run(["dvc", "repro"], cwd=work, capture_output=True, text=True, env=env(work))
            assert result.returncode != 0 and re.findall(r"Running stage '([^']+)'", result.stdout) == ["check_params"]
            [line] = [x for x in result.stderr.splitlines() if "check_params.py: error:" in x]
            assert message in line
            assert sorted(p.name for p in prepared.iterdir()) == before
        single = subprocess.run(["dvc", "repro", "-s", "prepare@trec"], cwd=work, capture_output=True, text=True, env=env(work))
        assert single.returncode != 0 and not prepared.exists()  # DVC removed the output before the stage could check
    finally:
        (work / "params.yaml").write_text(params)
    assert subprocess.run(["dvc", "checkout", "prepare@trec"], cwd=work, env=env(work), capture_output=True).returncode == 0
    assert sorted(p.name for p in prepared.iterdir()) == before
    again = subprocess.run(["dvc", "repro"], cwd=work, capture_output=True, text=True, env=env(work))
    assert again.returncode == 0 and re.findall(r"Running stage '([^']+)'", again.stdout) == ["check_params"]
