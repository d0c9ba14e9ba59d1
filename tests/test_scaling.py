"""The compute-scaling study's mechanics: the LM compute each language model records, the configs of each level and
the check of params `scaling` (the stages themselves run in tests/test_pipeline.py's dvc repro)."""

import copy
import json

import pytest
import yaml
from common import ROOT, check_scaling, scaled
from test_resume import prepared

from ulmfit import steps
from ulmfit.awd_lstm import lm_flops
from ulmfit.config import ConfigError, LMConfig, ModelConfig

MODEL = ModelConfig(emb_size=8, hidden_size=12, n_layers=3)


def test_a_language_model_records_the_tokens_it_trained_on_and_their_flops(tmp_path):
    prepared(tmp_path / "data", labels=False)
    cfg = LMConfig(epochs=2, batch_size=4, bptt=10, variable_bptt=False, precision="fp32")
    m = steps.pretrain(tmp_path / "data", tmp_path / "lm", MODEL, cfg, progress=False)
    per_epoch = [h["tokens"] for h in m["history"]]
    assert per_epoch[0] > 0 and per_epoch[1] == 2 * per_epoch[0]  # cumulative: the same text twice
    assert per_epoch[0] == 4 * 10 * m["history"][0]["step"]  # rows x bptt a step, fixed bptt
    vocab = len(json.loads((tmp_path / "data" / "vocab.json").read_text()))
    assert m["train_tokens_seen"] == per_epoch[-1]
    assert m["train_flops"] == 3 * lm_flops(8, 12, vocab) * per_epoch[-1]
    assert json.loads((tmp_path / "lm" / "metrics.json").read_text())["train_flops"] == m["train_flops"]
    tuned = steps.finetune_lm(tmp_path / "data", tmp_path / "ft", LMConfig(max_tokens=400, batch_size=4, bptt=10,
                              variable_bptt=False, precision="fp32"), tmp_path / "lm", progress=False)
    assert 0 < tuned["train_tokens_seen"] <= 440 and tuned["train_flops"] == 3 * lm_flops(8, 12, vocab) * tuned["train_tokens_seen"]


def test_lm_flops_formula():
    assert lm_flops(128, 192, 10_000) == 3_969_024  # cpu-profile: 3.97 MFLOP a token forward
    layers = 2 * 4 * (192 * (128 + 192) + 192 * (192 + 192) + 128 * (192 + 128))
    assert lm_flops(128, 192, 10_000) == layers + 2 * 128 * 10_000


@pytest.mark.parametrize("level, epochs, max_tokens", [(0.25, 1, 250), (0.0625, 1, 62), (2, 2, 0), (4, 4, 0)])
def test_a_level_scales_the_tokens_by_capping_the_text_below_1_and_multiplying_epochs_above(level, epochs, max_tokens):
    cfg = scaled(LMConfig(epochs=1), level, text_tokens=1000)
    assert (cfg.epochs, cfg.max_tokens) == (epochs, max_tokens)
    assert scaled(LMConfig(epochs=3, max_tokens=800), 0.5, 1000).max_tokens == 400  # of its own cap, every epoch
    assert scaled(LMConfig(epochs=3), 2, 1000).epochs == 6


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update(dataset="ag_news"), "scaling.dataset must be one of datasets"),
    (lambda s: s.update(levels=[0.5, 1]), "other than 1"),
    (lambda s: s.update(levels=[0.5, 0.5]), "distinct"),
    (lambda s: s.update(levels=[-1]), "positive"),
    (lambda s: s.update(levels="0.5"), "must list"),
    (lambda s: s.update(levels=[1.5]), "not a whole number of epochs"),
    (lambda s: s.update(level=[2]), "level"),
])
def test_bad_scaling_params_are_named(edit, message):
    p = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    check_scaling(copy.deepcopy(p), "tiny.yaml")  # as committed: passes
    edit(p["scaling"])
    with pytest.raises(ConfigError, match=message):
        check_scaling(p, "tiny.yaml")
