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
