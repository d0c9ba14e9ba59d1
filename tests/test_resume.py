"""Resume after `kill -9` in the middle of an epoch ends with the same weights and metrics."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ulmfit.checkpoint import read
from ulmfit.precision import bf16_runs
from ulmfit.text import SPECIAL_TOKENS, Docs

MODEL = ["emb_size=8", "hidden_size=12"]


def prepared(path, n_train=400, labels=True):
    rng = np.random.default_rng(0)
    path.mkdir()
    for split, n in (("train", n_train), ("valid", 30)):
        seqs = [np.concatenate([[2], rng.integers(9, 40, rng.integers(5, 40))]) for _ in range(n)]
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
        y = np.array([int(s[1] % 2) for s in seqs]) if labels else None  # two classes: the first token's parity
        Docs(np.concatenate(seqs).astype(np.int32), offsets, y).save(path / f"{split}.npz")
    (path / "vocab.json").write_text(json.dumps(SPECIAL_TOKENS + [f"w{i}" for i in range(31)]))
    (path / "info.json").write_text(json.dumps({"dataset": "synthetic", "classes": ["a", "b"]}))


def run(args, kill_when=None):
    cmd = [sys.executable, "-m", "ulmfit.cli", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if kill_when is None:
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not kill_when.exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.01)
    time.sleep(0.2)  # let it run on past the checkpoint, into the next steps
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def same(a, b):
    wa, wb = read(a), read(b)
    for key, value in wa["state_dict"].items():
        assert torch.equal(value, wb["state_dict"][key]), key
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["history"] == mb["history"]


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=pytest.mark.skipif(
    not bf16_runs("cpu"), reason="this CPU has no bf16 LSTM kernel (tests/test_precision.py covers the refusal)"))])
def test_lm_pretraining_resumes_after_kill_9(tmp_path, precision):
    prepared(tmp_path / "corpus", labels=False)
    settings = ["--set", *MODEL, "epochs=2", "batch_size=4", "bptt=10", "ckpt_every=40", f"precision={precision}"]
    run(["pretrain", "--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / "straight"), *settings])
    out = tmp_path / "killed"
    run(["pretrain", "--corpus", str(tmp_path / "corpus"), "--out", str(out), *settings],
        kill_when=tmp_path / "killed.resume.pt")
    assert not out.exists()  # nothing half-written
    state = torch.load(tmp_path / "killed.resume.pt", weights_only=False)
    assert state["pos"]["epoch"] == 0 and state["pos"]["batch"] > 0  # killed in the middle of the first epoch
    run(["pretrain", "--corpus", str(tmp_path / "corpus"), "--out", str(out), *settings])
    same(tmp_path / "straight", out)
    assert not (tmp_path / "killed.resume.pt").exists()


def test_classifier_fine_tuning_resumes_after_kill_9(tmp_path):
    prepared(tmp_path / "data", n_train=3000)
    settings = ["--set", *MODEL, "epochs=3", "batch_size=8", "bptt=10", "max_len=20", "ckpt_every=60"]
    run(["train-clf", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "straight"), *settings])
    out = tmp_path / "killed"
    run(["train-clf", "--data", str(tmp_path / "data"), "--out", str(out), *settings],
        kill_when=tmp_path / "killed.resume.pt")
    assert not out.exists()
    run(["train-clf", "--data", str(tmp_path / "data"), "--out", str(out), *settings])
    same(tmp_path / "straight", out)
