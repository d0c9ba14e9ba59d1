"""Data-parallel LM training under torchrun (gloo, 2 CPU processes) against one process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ulmfit import distributed
from ulmfit.awd_lstm import LanguageModel
from ulmfit.checkpoint import load_model, read
from ulmfit.config import ModelConfig
from ulmfit.text import SPECIAL_TOKENS, Docs

SETTINGS = ["emb_size=8", "hidden_size=12", "output_p=0", "hidden_p=0", "input_p=0", "embed_p=0", "weight_p=0",
            "epochs=2", "batch_size=4", "bptt=10", "variable_bptt=false", "precision=fp32", "lr=0.01"]


def corpus(path, n_train=30):
    rng = np.random.default_rng(0)
    path.mkdir()
    for split, n in (("train", n_train), ("valid", 5)):
        seqs = [np.concatenate([[2], rng.integers(9, 40, rng.integers(20, 60))]) for _ in range(n)]
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
        Docs(np.concatenate(seqs).astype(np.int32), offsets).save(path / f"{split}.npz")
    (path / "vocab.json").write_text(json.dumps(SPECIAL_TOKENS + [f"w{i}" for i in range(31)]))


ENV = dict(os.environ, OMP_NUM_THREADS="1")
TORCHRUN = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", "2"]


def command(args, out, launcher, settings=SETTINGS):
    return [*launcher, "-m", "ulmfit.cli", "pretrain", *args, "--out", str(out), "--set", *settings]


def pretrain(args, out, launcher=(), settings=SETTINGS):
    result = subprocess.run(command(args, out, launcher, settings), capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_process_training_matches_one_process_on_the_same_global_batch(tmp_path):
    corpus(tmp_path / "corpus")
    args = ["--corpus", str(tmp_path / "corpus")]
    pretrain(args, tmp_path / "single", [sys.executable])
    pretrain(args, tmp_path / "ddp", TORCHRUN)
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


def all_descendants(pid):
    """The processes below `pid` (torchrun's workers and theirs), from /proc."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def test_two_process_training_resumes_after_kill_9(tmp_path):
    """Killed mid-epoch under torchrun and started again, it ends where an uninterrupted run ends."""
    corpus(tmp_path / "corpus", n_train=150)
    args = ["--corpus", str(tmp_path / "corpus")]
    settings = ["emb_size=8", "hidden_size=12", "epochs=2", "batch_size=4", "bptt=10", "ckpt_every=10",
                "precision=fp32"]  # the paper's dropouts: every rank's random state must come back

    pretrain(args, tmp_path / "straight", TORCHRUN, settings)
    proc = subprocess.Popen(command(args, tmp_path / "killed", TORCHRUN, settings), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "killed.resume.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.01)
    time.sleep(0.3)  # on past the checkpoint, into the next steps
    for pid in [*all_descendants(proc.pid), proc.pid]:  # the workers and torchrun, all at once
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    state = torch.load(tmp_path / "killed.resume.pt", weights_only=False)
    assert state["pos"]["epoch"] == 0 and state["pos"]["batch"] > 0 and len(state["ranks"]) == 2
    assert not (tmp_path / "killed").exists()
    pretrain(args, tmp_path / "killed", TORCHRUN, settings)

    straight, resumed = read(tmp_path / "straight"), read(tmp_path / "killed")
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    m1, m2 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("straight", "killed"))
    assert [r["train_loss"] for r in m1["history"]] == [r["train_loss"] for r in m2["history"]]
    assert not (tmp_path / "killed.resume.pt").exists()


def test_one_process_calls_the_model_without_a_wrapper():
    model = LanguageModel(40, ModelConfig(emb_size=8, hidden_size=12))
    assert distributed.data_parallel_loss(model) == model.loss


DDP_WORKER = """
import json, sys
import torch
from torch.nn.parallel import DistributedDataParallel
from ulmfit import distributed
from ulmfit.awd_lstm import LanguageModel
from ulmfit.config import LMConfig, ModelConfig
from ulmfit.text import Docs
from ulmfit.train import train_lm

distributed.setup("cpu")
rank = distributed.rank()
torch.manual_seed(0)
model = LanguageModel(40, ModelConfig(emb_size=8, hidden_size=12, weight_p=0.5))
step_loss = distributed.data_parallel_loss(model)
x = torch.randint(4, 40, (2, 10), generator=torch.Generator().manual_seed(rank))  # other rows per rank
torch.manual_seed(rank)
model.loss(x[:, :-1], x[:, 1:])[0].backward()
alone = distributed.all_gather([p.grad.clone() for p in model.parameters()])  # each rank's own gradients
model.zero_grad()
torch.manual_seed(rank)  # the same dropout masks again
step_loss(x[:, :-1], x[:, 1:])[0].backward()
synced_is_mean = all(torch.allclose(p.grad, torch.stack(g).mean(0), atol=1e-7) for p, g in zip(model.parameters(), zip(*alone)))
calls = []
forward = DistributedDataParallel.forward
DistributedDataParallel.forward = lambda self, *a: calls.append(1) or forward(self, *a)
docs = Docs(torch.randint(4, 40, (400,)).numpy().astype("int32"), torch.tensor([0, 200, 400]).numpy())
history = train_lm(model, docs, None, LMConfig(batch_size=4, bptt=10, variable_bptt=False, precision="fp32"))
if rank == 0:
    json.dump({"wrapped": isinstance(step_loss, DistributedDataParallel),
               "ranks_differ_alone": any(not torch.equal(a, b) for a, b in zip(*alone)),
               "synced_is_mean": synced_is_mean,
               "ddp_calls": len(calls), "steps": history[-1]["step"]}, open(sys.argv[1], "w"))
"""


def test_two_processes_train_through_distributed_data_parallel(tmp_path):
    """Under world size 2 the loss runs through DDP, which averages the ranks' gradients, and
    train_lm calls it at every step."""
    (tmp_path / "worker.py").write_text(DDP_WORKER)
    root = str(Path(__file__).resolve().parents[1])  # the script runs from tmp_path: import this checkout's ulmfit
    env = dict(ENV, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([*TORCHRUN, str(tmp_path / "worker.py"), str(tmp_path / "out.json")], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["wrapped"] and out["ranks_differ_alone"] and out["synced_is_mean"]
    assert out["ddp_calls"] == out["steps"] > 0
