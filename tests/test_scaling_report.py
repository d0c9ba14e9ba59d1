"""The report's compute-scaling section on made-up runs in the stages' layout, whose line is known: test error
0.25 - 0.05 log10(level) (seeds -0.01, 0, +0.01 around it), LM FLOPs 1e15 x level, perplexity 100 - 20 log10(level),
bag of words 0.17, 0.18, 0.19. The fits reach bag of words (0.18) at log10(level) = 1.4 and perplexity 72."""

import json
import math

import pandas as pd
import pytest
import report

from ulmfit.io import write_json

LEVELS = [0.0625, 0.125, 0.25, 0.5, 2]
SEEDS = [0, 1, 2]
NOISE = {0: -0.01, 1: 0.0, 2: 0.01}
PARAMS = {"seeds": SEEDS, "imdb": {"budget": 1000}, "scaling": {"dataset": "imdb", "levels": LEVELS}}


def error(level, seed, slope=-0.05):
    return 0.25 + slope * math.log10(level) + NOISE[seed]


def fake_runs(root, slope=-0.05):
    """Every file the section reads, in the stages' layout: level 1 is the profile's default run."""
    for level in [1, *LEVELS]:
        lm = {"train_flops": 2e14 * level, "valid_ppl": 100 - 20 * math.log10(level)}
        pretrained = {"train_flops": 8e14 * level, "valid_ppl": 300.0}
        if level == 1:
            write_json(root / "models" / "pretrained" / "fwd" / "metrics.json", pretrained)
            write_json(root / "models" / "lm" / "imdb" / "fwd" / "metrics.json", lm)
        else:
            write_json(root / "models" / "scaling" / str(level) / "pretrained" / "metrics.json", pretrained)
            write_json(root / "models" / "scaling" / str(level) / "lm" / "metrics.json", lm)
        for seed in SEEDS:
            result = {"step": "evaluate", "models": {"ulmfit": {"test_error": error(level, seed, slope), "direction": "fwd"}},
                      "n_test": 2000}
            write_json(root / "runs" / "evaluate" / "imdb" / f"{seed}.json" if level == 1
                       else root / "runs" / "scaling" / str(level) / str(seed) / "test.json", result)
    write_json(root / "runs" / "bow" / "imdb.json", {"dataset": "imdb", "runs": [
        run for seed in SEEDS for run in ({"seed": seed, "n_train": 100, "ablation": False, "valid_error": 0.4},
                                          {"seed": seed, "n_train": 1000, "ablation": True, "valid_error": 0.2,
                                           "test_error": 0.18 + NOISE[seed]})]})
    return report.load_bow(root)


def table_rows(text):
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()}


def test_scaling_frame_reads_every_level_and_seed_in_the_stages_layout(tmp_path):
    frame, bow_errors = report.scaling_frame(tmp_path, PARAMS, fake_runs(tmp_path))
    assert len(frame) == 18 and sorted(set(frame.level)) == [0.0625, 0.125, 0.25, 0.5, 1, 2]
    two = frame[frame.level == 2].iloc[0]
    assert (two.pretrain_flops, two.finetune_flops, two.lm_flops) == (1.6e15, 4e14, 2e15)
    default = frame[frame.level == 1].set_index("seed")
    assert default.test_error.to_dict() == pytest.approx({0: 0.24, 1: 0.25, 2: 0.26})
    assert default.ppl.iloc[0] == 100 and default.lm_flops.iloc[0] == 1e15
    assert bow_errors == pytest.approx({0: 0.17, 1: 0.18, 2: 0.19})


def test_scaling_section_writes_the_figure_table_fits_and_metrics(tmp_path):
    out, metrics = tmp_path / "reports", {}
    [text] = report.scaling_section(PARAMS, *report.scaling_frame(tmp_path, PARAMS, fake_runs(tmp_path)), out, metrics)
    assert text.startswith("## Compute scaling: where ULMFiT overtakes bag of words (IMDb, 1,000 labels)")
    assert (out / "figures" / "scaling.png").stat().st_size > 10_000 and "(figures/scaling.png)" in text
    assert len(pd.read_csv(out / "scaling.csv")) == 18
    rows = table_rows(text)
    assert list(rows) == ["0.0625", "0.125", "0.25", "0.5", "1 (default)", "2"]
    # 0.25 + 0.05 log10(16) = 31.02%; half-width t(0.975, 2) x 0.01 / sqrt(3) = 2.48 points
    assert rows["0.0625"] == ["5e+13", "1.25e+13", "6.25e+13", "124.1", "31.02 ± 2.48", "3"]
    assert rows["1 (default)"] == ["8e+14", "2e+14", "1e+15", "100.0", "25.00 ± 2.48", "3"]
    assert "-5 (" in text and "points per 10x FLOPs" in text and "+0.25 (" in text
    m = metrics["scaling"]
    json.dumps(m, allow_nan=False)  # NaN-free
    assert m["levels"]["0.0625"] == {"lm_flops": 6.25e13, "ppl": pytest.approx(100 + 20 * math.log10(16)),
                                     "test_error": pytest.approx(0.3102, abs=1e-4), "test_error_ci": pytest.approx(0.0248, abs=1e-4),
                                     "seeds": 3}
    assert m["bow_test_error"] == pytest.approx(0.18)
    fit = m["log_flops_fit"]
    assert fit["slope"] == pytest.approx(-0.05) and fit["slope_ci"][1] < 0
    assert fit["crossing_flops"] == pytest.approx(10**16.4) and fit["crossing_multiple_of_default"] == pytest.approx(10**1.4)
    assert fit["crossing_gpu_hours"] == pytest.approx(10**16.4 / report.GPU_FLOPS / 3600)
    assert fit["crossing_flops_ci"][0] < 10**16.4 < fit["crossing_flops_ci"][1]
    assert fit["crossing_gpu_hours_ci"][0] < fit["crossing_gpu_hours"] < fit["crossing_gpu_hours_ci"][1]
    assert m["ppl_fit"]["crossing_ppl"] == pytest.approx(72.0)
    assert m["ppl_fit"]["crossing_ppl_ci"][0] < 72 < m["ppl_fit"]["crossing_ppl_ci"][1]
    assert text.count("**extrapolation**") == 2 and "GPU hours" in text and "stated rate, not measured" in text
    assert f"{10**16.4:.3g} LM FLOPs" in text and "perplexity of **72**" in text


def test_a_flat_trend_does_not_reach_bag_of_words(tmp_path):
    metrics = {}
    [text] = report.scaling_section(PARAMS, *report.scaling_frame(tmp_path, PARAMS, fake_runs(tmp_path, slope=0.0)),
                                    tmp_path / "reports", metrics)
    assert text.count("does not reach bag of words") == 2 and "extrapolation" not in text
    fit = metrics["scaling"]["log_flops_fit"]
    assert fit["crossing_flops"] is None and fit["crossing_gpu_hours"] is None and fit["crossing_flops_ci"] == [None, None]
    assert metrics["scaling"]["ppl_fit"]["crossing_ppl"] is None
    json.dumps(metrics, allow_nan=False)


@pytest.mark.parametrize("params", [{"seeds": SEEDS}, {**PARAMS, "scaling": {"dataset": "imdb", "levels": []}}])
def test_no_study_no_section_and_no_files(tmp_path, params):
    out, metrics = tmp_path / "reports", {}
    frame, bow_errors = report.scaling_frame(tmp_path, params, fake_runs(tmp_path))
    assert frame.empty and bow_errors == {}
    assert report.scaling_section(params, frame, bow_errors, out, metrics) == []
    assert metrics == {} and not out.exists()


def test_findings_say_what_the_study_shows_and_what_it_cannot(tmp_path):
    metrics = {}
    report.scaling_section(PARAMS, *report.scaling_frame(tmp_path, PARAMS, fake_runs(tmp_path)), tmp_path / "reports", metrics)
    text = report.scaling_findings(metrics["scaling"])
    # 6 levels, 1/16 to 2: 32x; slope -5 points per 10x; default 25.00 ± 2.48 against bag of words 18.00 ± 2.48;
    # the line reaches 18% at 10^1.4 = 25.1x the default's 1e15 FLOPs, past level 2: an extrapolation
    assert "over 6 levels spanning 32x of LM compute, test error falls by 5 points per 10x LM compute" in text
    assert "ULMFiT's 25.00 ± 2.48% stands against bag of words' 18.00 ± 2.48%" in text
    assert f"reaches bag of words at about 25.1x the default LM compute ({10**16.4:.2g} FLOPs" in text
    assert "an **extrapolation** beyond the measured levels" in text and "What it cannot show" in text
    assert f"{report.PAPER_IMDB_LM_FLOPS / 1e15:,.0f}x the default level" in text


def test_findings_of_a_flat_study_resolve_no_trend(tmp_path):
    metrics = {}
    report.scaling_section(PARAMS, *report.scaling_frame(tmp_path, PARAMS, fake_runs(tmp_path, slope=0.0)),
                           tmp_path / "reports", metrics)
    text = report.scaling_findings(metrics["scaling"])
    assert "no trend is resolved" in text and "the fitted line does not reach bag of words" in text
    assert "extrapolation" not in text and report.scaling_findings(None) == ""
