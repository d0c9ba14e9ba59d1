"""The report's checks of the paper's findings, on made-up runs whose answers are known."""

import sys
from pathlib import Path

import pandas as pd
import pytest
import report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

VARIANTS = {"tables": {"table6": {"rows": [["No LM fine-tuning", "lm_none"], ["Full + discr + stlr", "ulmfit"]]},
                       "table7": {"rows": [["Last", "last"], ["Freez + cos", "freez_cos"], ["Freez + discr + stlr", "ulmfit"]]}}}
PAPER = {"validation_error": {"ulmfit": {"imdb": 5.0}, "lm_none": {"imdb": 6.99}, "last": {"imdb": 6.49},
                              "freez_cos": {"imdb": 5.70}}}
PARAMS = {"datasets": ["imdb"], "clf_variants": {"from_fwd": ["ulmfit", "last", "freez_cos"], "from_same_name": ["lm_none"],
                                                "from_pretrained_fwd": [], "from_nothing": []}}


def runs(errors):
    return pd.DataFrame([{"kind": "ablation", "dataset": "imdb", "variant": v, "seed": s, "valid_error": e}
                         for v, per_seed in errors.items() for s, e in enumerate(per_seed)])


def test_directions_compare_our_paired_difference_with_the_papers_sign():
    rows = report.directions(PARAMS, VARIANTS, runs({"ulmfit": [0.30, 0.32, 0.31], "lm_none": [0.35, 0.36, 0.36],
                                                       "last": [0.29, 0.30, 0.31], "freez_cos": [0.20, 0.40, 0.30]}), PAPER)
    by = {r["label"]: r for r in rows}
    assert len(rows) == 3  # every row but ULMFiT's
    assert by["No LM fine-tuning"]["diff"] == pytest.approx(0.0467, abs=1e-4)
    assert by["No LM fine-tuning"]["agrees"] and by["No LM fine-tuning"]["significant"]
    assert not by["Last"]["agrees"] and not by["Last"]["significant"]  # ours -0.01 +- 0.02, the paper's +1.49
    assert not by["Freez + cos"]["agrees"] and not by["Freez + cos"]["significant"]  # -0.01 +- 0.23
    metrics = {}
    text = report.directions_section(rows, metrics)
    assert metrics["directions"] == {"cells": 3, "agree": 1, "agree_significant": 1, "opposite_significant": 0}
    assert "1 of the 3 cells" in text


def test_findings_check_bag_of_words_the_interval_and_the_curve():
    metrics = {"imdb": {"test_error_fwd": 0.20, "test_error_ensemble": 0.15, "test_error_bow": 0.18}}
    rows = [{"dataset": "imdb", "label": "Last", "diff": 0.02, "half": 0.01, "significant": True}]
    curve = pd.DataFrame([{"dataset": "IMDb", "variant": "ulmfit", "examples": n, "error": e} for n, e in ((100, 40), (500, 30), (1000, 31))]
                         + [{"dataset": "IMDb", "variant": "scratch", "examples": 500, "error": 45}])
    text = report.findings_section({"datasets": ["imdb"]}, metrics, rows, curve)
    lines = {line.split("|")[2].strip(): line.split("|")[3].strip() for line in text.splitlines() if line.startswith("| IMDb")}
    assert lines["ULMFiT forward beats bag of words (test)"] == "**no**"
    assert lines["the fwd + bwd ensemble beats bag of words (test)"] == "yes"
    assert lines["ULMFiT beats last, interval excluding 0"] == "yes"
    assert lines["semi-supervised ULMFiT's error falls with more labels"] == "**no**"  # 30 -> 31
    assert lines["ULMFiT with 100 labels at least as good as scratch with 500"] == "yes"
    assert metrics["findings"] == {"checked": 5, "hold": 3}


def test_calibration_reports_the_median_step_rate_without_running_this_suites_engine(monkeypatch):
    import calibrate

    monkeypatch.setattr(calibrate, "STEPS", 4)
    monkeypatch.setattr(calibrate, "WARMUP", 1)
    import ulmfit.precision  # the choice of precision: the one piece of this suite calibrate.py uses

    engine = {f"ulmfit.{path.stem}" for path in Path(ulmfit.precision.__file__).parent.glob("*.py")}
    for name in engine - {"ulmfit.__init__", "ulmfit.precision", "ulmfit.config"}:
        monkeypatch.setitem(sys.modules, name, None)  # any import of the rest of this suite now fails
    result = calibrate.calibrate()
    assert 0 < result["slow_tokens_per_s"] <= result["tokens_per_s"] <= result["fast_tokens_per_s"]
    assert result["reference_tokens_per_s"] == calibrate.REFERENCE_TOKENS_PER_S and result["finished"] >= result["started"]


def test_language_model_loss_curves_are_drawn_and_embedded(tmp_path):
    for folder in ("pretrained/fwd", "pretrained/bwd", "lm/trec/fwd", "lm/trec/bwd"):
        metrics = tmp_path / "models" / folder / "dvclive" / "plots" / "metrics"
        metrics.mkdir(parents=True)
        steps = list(range(10, 110, 10))
        pd.DataFrame({"timestamp": 0, "step": steps, "train_loss": [5 - s / 50 for s in steps]}).to_csv(
            metrics / "train_loss.tsv", sep="\t", index=False)
        pd.DataFrame({"timestamp": 0, "step": [100], "valid_loss": [3.5]}).to_csv(metrics / "valid_loss.tsv", sep="\t",
                                                                                 index=False)
    curves = report.lm_curves(tmp_path, ["trec", "imdb"])  # no imdb runs: no imdb curves
    points = curves.groupby(["run", "direction", "which"]).size().to_dict()
    assert points == {(run, d, which): 10 if which == "training" else 1
                      for run in ("pretraining", "TREC-6") for d in ("fwd", "bwd") for which in ("training", "validation")}
    out = tmp_path / "reports"
    [text] = report.lm_curves_section(tmp_path, ["trec", "imdb"], out)
    for file in ("lm_pretraining.png", "lm_finetuning.png"):
        assert (out / "figures" / file).stat().st_size > 1000
        assert f"(figures/{file})" in text
    assert report.lm_curves_section(tmp_path / "elsewhere", ["trec"], out) == []  # e.g. imported weights: no curves
