"""benchmarks/run.py's device run and paper-profile smoke run, on a CPU at tiny sizes (the same code paths that
`--device cuda` and `--smoke --device cuda` take on a GPU). Rates are not checked, only that each is measured."""

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import harness  # noqa: E402
import overhead  # noqa: E402
import peak  # noqa: E402
import run  # noqa: E402
import smoke  # noqa: E402

needs_data = pytest.mark.skipif(not (harness.MIRROR / "imdb" / "train.parquet").exists(), reason="needs the IMDb mirror")


@needs_data
def test_the_device_run_measures_every_case_and_writes_results_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    run.run_all(tmp_path, "cpu", run.device_plan(("tiny",)), "results-gpu")
    results = json.loads((tmp_path / "results-gpu.json").read_text())
    assert results["device"] == "cpu"
    measured = [row for row in results["cases"] if "skipped" not in row]
    bf16 = results["precision_auto"] == "bf16"  # the device run's softmax cases are bf16 ones: skipped where auto is fp32
    assert {row["case"] for row in measured} == {"peak", "lm_train", "clf_train", "predict"} | ({"softmax"} if bf16 else set())
    for row in measured:
        assert "error" not in row, row
        assert row["peak_mem_mb"] > 0
        key = next(k for k in ("tokens_per_s", "docs_per_s", "flops_per_s") if k in row)
        assert row[key] > 0, row
        if row["case"] in ("lm_train", "clf_train"):  # their fp32 rows against the fp32 peak measured in the same run
            assert row["model_flops_per_s"] > 0 and (row["fraction_of_peak"] > 0 or row["impl"].endswith("bf16")), row
        if row["case"] != "softmax":  # its range is in seconds
            assert row[f"{key}_min"] <= row[key] <= row[f"{key}_max"] and row["repetitions"] >= 2, row
    softmax = {row["impl"]: row for row in measured if row["case"] == "softmax"}
    if bf16:
        assert softmax["chunked_bf16"]["block_rows"] == 83886 and softmax["full_bf16"]["block_rows"] is None  # 32 MiB / (2 B x 200)
        assert softmax["chunked_bf16"]["min_seconds"] <= softmax["chunked_bf16"]["seconds"] <= softmax["chunked_bf16"]["max_seconds"]
    text = (tmp_path / "results-gpu.md").read_text()
    for heading in ("Language-model training", "chunked softmax", "Classifier training", "Inference: 1,000",
                    "The machine's limit"):
        assert heading in text
    assert "## Tokenization" not in text  # a case the device run leaves out


@needs_data
def test_the_smoke_run_trains_the_profiles_model_and_reports_tokens_per_second(tmp_path):
    params = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    params["model"] = {"emb_size": 8, "hidden_size": 8}
    params["data"]["max_vocab"] = 300
    params["clf"]["max_len"] = 70
    profile = tmp_path / "tiny.yaml"
    profile.write_text(yaml.safe_dump(params))
    result = smoke.smoke("cpu", profile, lm_steps=3, clf_docs=16)
    assert (result["emb_size"], result["hidden_size"], result["vocab_size"]) == (8, 8, 300)
    assert result["lm_steps"] >= 2 and result["lm_tokens"] >= 3 * 64 * 70
    assert result["clf_docs"] == 16
    for key in ("lm_tokens_per_s", "clf_tokens_per_s", "clf_docs_per_s", "peak_mem_mb"):
        assert result[key] > 0


def test_a_device_without_a_gpu_is_refused_with_the_fix(tmp_path):
    import subprocess

    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--device", "cuda", "--out", str(tmp_path)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2 and "torch sees no GPU" in proc.stderr.strip().splitlines()[-1]


def test_overhead_is_the_share_of_elapsed_time_outside_the_stages_work(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"cost": {"work_minutes": 67.52, "elapsed_minutes": 76.8, "peak_mem_mb": 1339.4}}))
    o = overhead.overhead(metrics)
    assert o["outside_minutes"] == pytest.approx(9.28) and o["outside_fraction"] == pytest.approx(9.28 / 76.8)
    metrics.write_text(json.dumps({"bow": {}}))
    with pytest.raises(SystemExit, match="no 'cost'; rerun the report stage"):
        overhead.overhead(metrics)
    with pytest.raises(SystemExit, match="does not exist"):
        overhead.overhead(tmp_path / "missing.json")


def test_import_seconds_times_a_stage_scripts_imports_in_a_fresh_process():
    assert "experiments/train_clf.py" in overhead.stage_scripts() and "benchmarks/calibrate.py" in overhead.stage_scripts()
    assert 0 < overhead.import_seconds("experiments/common.py", repeats=1) < 60


def test_a_rate_is_the_median_over_repetitions_shown_with_its_range():
    assert harness.spread("docs_per_s", [10, 10, 30], [1, 2, 1]) == {"docs_per_s": 10.0, "docs_per_s_min": 5.0,
                                                                     "docs_per_s_max": 30.0, "repetitions": 3}
    r = {"cases": [{"case": "predict", "config": "c", "impl": "ours", **harness.spread("docs_per_s", [10, 10, 30], [1, 2, 1])},
                   {"case": "lm_train", "config": "c", "impl": "ours_bf16", "tokens_per_s": 15616.9}]}
    assert harness.cell(r, "predict", "c", "ours", "docs_per_s") == "10.0 (5.0-30.0)"
    assert harness.cell(r, "lm_train", "c", "ours_bf16", "tokens_per_s") == "15,617"  # an older results.json: no range
    assert harness.cell(r, "predict", "c", "fastai", "docs_per_s") == "–"


def test_the_committed_results_md_is_what_render_makes_of_results_json():
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    assert run.markdown(results) == (ROOT / "benchmarks" / "results.md").read_text()


def test_model_flops_a_token_count_the_lstm_gates_and_the_tied_decoder():
    assert peak.lm_flops(128, 192, 10_000) == 3_969_024  # cpu-profile: 3.97 MFLOP a token forward
    assert peak.lm_flops(400, 1150, 60_000) == 88_380_000  # the paper's sizes: 88.4
    assert peak.lstm_flops(400, 1150) == 2 * 4 * (1150 * (400 + 1150) + 1150 * (1150 + 1150) + 400 * (1150 + 400))
    row = {"config": "paper", "impl": "ours_bf16"}
    assert peak.flops_per_token({**row, "case": "lm_train"}) == 3 * 88_380_000
    assert peak.flops_per_token({**row, "case": "lm_infer"}) == 88_380_000
    assert peak.flops_per_token({**row, "case": "softmax"}) == 6 * 400 * 60_000
    e = peak.lstm_flops(400, 1150)  # the classifier: forward over every token, backward over the last 140
    assert peak.clf_flops(400, 1150, 300) == e * (300 + 2 * 140) and peak.clf_flops(400, 1150, 100) == e * 300
    assert peak.flops_per_token({**row, "case": "clf_train", "mean_tokens": 300}) == e * 580 / 300


def results_with_peak():
    """A run with an fp32 peak of 100 GFLOP/s, a bf16 one of 400, and a case of each counted kind."""
    rate = lambda key, value, **more: {key: value, f"{key}_min": value * 0.9, f"{key}_max": value * 1.1, **more}  # noqa: E731
    return {"machine": "Some CPU, 2 cores", "device": "cpu", "torch": "2.13.0", "fastai": None, "cases": [
        {"case": "peak", "config": "-", "impl": "fp32", **rate("flops_per_s", 1e11), "size": 4096,
         "by_size": {"1024": 5e10, "2048": 9e10, "4096": 1e11}, "peak_mem_mb": 400.0},
        {"case": "peak", "config": "-", "impl": "bf16", **rate("flops_per_s", 4e11), "size": 2048,
         "by_size": {"1024": 3e11, "2048": 4e11, "4096": 3.5e11}, "peak_mem_mb": 400.0},
        {"case": "lm_train", "config": "cpu-profile", "impl": "ours_fp32", **rate("tokens_per_s", 1000.0)},
        {"case": "lm_train", "config": "cpu-profile", "impl": "fastai_fp32", "skipped": "fastai is not installed"},
        {"case": "lm_infer", "config": "cpu-profile", "impl": "ours_bf16", **rate("tokens_per_s", 10_000.0)},
        {"case": "softmax", "config": "cpu-profile", "impl": "chunked_fp32", "seconds": 22.4, "min_seconds": 22.0,
         "max_seconds": 23.0, "tokens_per_s": 100.0, "block_rows": 838, "extra_peak_mem_mb": 0.0},
        {"case": "clf_train", "config": "cpu-profile", "impl": "ours_bf16", **rate("docs_per_s", 10.0), "mean_tokens": 300.0},
    ]}


def test_the_fraction_of_peak_is_model_flops_over_the_runs_peak_in_the_cases_precision():
    r = results_with_peak()
    peak.add_model_flops(r)
    rows = {x["case"]: x for x in r["cases"] if x["config"] == "cpu-profile" and "skipped" not in x}
    assert rows["lm_train"]["model_flops_per_s"] == pytest.approx(3 * 3_969_024 * 1000)
    assert rows["lm_train"]["fraction_of_peak"] == pytest.approx(3 * 3_969_024 * 1000 / 1e11)  # fp32's peak
    assert rows["lm_infer"]["fraction_of_peak"] == pytest.approx(3_969_024 * 10_000 / 4e11)  # bf16's
    assert rows["softmax"]["fraction_of_peak"] == pytest.approx(6 * 128 * 10_000 * 100 / 1e11)
    e = peak.lstm_flops(128, 192)
    assert rows["clf_train"]["flops_per_token"] == pytest.approx(e * 580 / 300)
    assert rows["clf_train"]["fraction_of_peak"] == pytest.approx(10 * e * 580 / 4e11)
    assert "model_flops_per_s" not in r["cases"][3]  # a skipped case has no rate
    r["cases"][1] = {"case": "peak", "config": "-", "impl": "bf16", "skipped": "precision auto runs fp32 here"}
    assert peak.model_flops(r, rows["lm_infer"])["fraction_of_peak"] is None  # no bf16 peak in the run: no fraction


def test_the_peak_case_runs_at_tiny_sizes_and_reports_the_fastest_sizes_median_and_range():
    for impl in ("fp32", "bf16"):
        row = peak.peak_case("tiny", impl)
        assert row["flops_per_s_min"] <= row["flops_per_s"] <= row["flops_per_s_max"] and row["repetitions"] == 3, row
        assert list(row["by_size"]) == ["32", "64"] and row["flops_per_s"] == max(row["by_size"].values()), row
        assert row["by_size"][str(row["size"])] == row["flops_per_s"] and row["peak_mem_mb"] > 0


def test_results_md_shows_the_peak_and_each_cases_model_flops_and_fraction_of_it():
    text = run.markdown(results_with_peak())
    assert "## The machine's limit: matmul peak" in text and "2 x 4h x (n_in + h)" in text
    assert "| fp32 | 100.0 (90.0-110.0) | 4096 | 1024: 50.0, 2048: 90.0, 4096: 100.0 |" in text
    assert "| bf16 | 400.0 (360.0-440.0) | 2048 | 1024: 300.0, 2048: 400.0, 4096: 350.0 |" in text
    assert "| lm_train | cpu-profile | ours_fp32 | 11.91 | 1,000 | 11.9 | 11.9% |" in text
    assert "| lm_infer | cpu-profile | ours_bf16 | 3.97 | 10,000 | 39.7 | 9.92% |" in text
    assert "| softmax | cpu-profile | chunked_fp32 | 7.68 | 100 | 0.8 | 0.768% |" in text
    assert "| clf_train | cpu-profile | ours_bf16 | 2.72 | 3,000 | 8.2 | 2.04% |" in text
    assert "fastai_fp32 |" not in text.split("fraction of peak")[1].split("Peak memory")[0]  # skipped: no row
