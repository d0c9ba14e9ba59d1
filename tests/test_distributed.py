"""Data-parallel LM training under torchrun (gloo, 2 CPU processes) against one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from ulmfit.checkpoint import load_model, read
from ulmfit.text import SPECIAL_TOKENS, Docs

SETTINGS = ["emb_size=8", "hidden_size=12", "output_p=0", "hidden_p=0", "input_p=0", "embed_p=0", "weight_p=0",
            "epochs=2", "batch_size=4", "bptt=10", "variable_bptt=false", "precision=fp32", "lr=0.01"]


def corpus(path):
    rng = np.random.default_rng(0)
    path.mkdir()
    for split, n in (("train", 30), ("valid", 5)):
        seqs = [np.concatenate([[2], rng.integers(9, 40, rng.integers(20, 60))]) for _ in range(n)]
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
        Docs(np.concatenate(seqs).astype(np.int32), offsets).save(path / f"{split}.npz")
    (path / "vocab.json").write_text(json.dumps(SPECIAL_TOKENS + [f"w{i}" for i in range(31)]))


def pretrain(args, out, launcher=()):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [*launcher, "-m", "ulmfit.cli", "pretrain", *args, "--out", str(out), "--set", *SETTINGS]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_process_training_matches_one_process_on_the_same_global_batch(tmp_path):
    corpus(tmp_path / "corpus")
    args = ["--corpus", str(tmp_path / "corpus")]
    pretrain(args, tmp_path / "single", [sys.executable])
    torchrun = Path(sys.executable).with_name("torchrun")
    pretrain(args, tmp_path / "ddp", [str(torchrun), "--standalone", "--nproc_per_node", "2"])
    single, ddp = read(tmp_path / "single"), read(tmp_path / "ddp")
    for key, value in single["state_dict"].items():
        assert torch.allclose(value, ddp["state_dict"][key], atol=1e-5), key
    m1 = json.loads((tmp_path / "single" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert m2["processes"] == 2 and m1["processes"] == 1
    for a, b in zip(m1["history"], m2["history"]):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-5 and abs(a["valid_loss"] - b["valid_loss"]) < 1e-5
    model, _ = load_model(tmp_path / "ddp")  # the rank-0 checkpoint loads in a single process
    assert model.decoder.out_features == 40
    assert not (tmp_path / "ddp.resume.pt").exists()
