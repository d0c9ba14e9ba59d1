"""Accelerator memory: benchmarks/memory.py's figures against the measured peak of small CPU models; running out of
memory is one line naming the knobs that lower it, with the resume checkpoint kept."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_resume import MODEL, prepared

from ulmfit import cli, train
from ulmfit.awd_lstm import Classifier, LanguageModel
from ulmfit.config import ModelConfig
from ulmfit.precision import OutOfMemory, kernel_error

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import memory  # noqa: E402

CUDA_OOM = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB of which 1.06 GiB "
            "is free. Process 4242 has 78.03 GiB memory in use. Of the allocated memory 75.20 GiB is allocated by "
            "PyTorch, and 1.30 GiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large "
            "try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.")


def test_out_of_memory_becomes_one_line_naming_the_request_the_card_and_the_knobs():
    error = kernel_error(torch.OutOfMemoryError(CUDA_OOM))
    assert isinstance(error, OutOfMemory) and "\n" not in str(error)
    assert str(error).startswith("out of memory (Tried to allocate 2.00 GiB; GPU 0 has a total capacity of 79.10 GiB "
                                 "of which 1.06 GiB is free): lower batch_size")
    assert "max_len" in str(error) and "resume checkpoint is kept" in str(error)
    cpu = kernel_error(RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                                    "memory: you tried to allocate 1099511627776 bytes. Error code 12"))
    assert isinstance(cpu, OutOfMemory) and "you tried to allocate 1099511627776 bytes" in str(cpu)
    assert kernel_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None  # a bug keeps its traceback


def test_out_of_memory_in_training_exits_2_in_one_line_and_keeps_the_resume_checkpoint(tmp_path, monkeypatch, capsys):
    prepared(tmp_path / "corpus", labels=False)
    step, calls = train.LMRun.step, []

    def step_then_oom(self, *args):  # two steps, checkpointed after each, then the card is full
        calls.append(1)
        if len(calls) > 2:
            raise torch.OutOfMemoryError(CUDA_OOM)
        return step(self, *args)

    monkeypatch.setattr(train.LMRun, "step", step_then_oom)
    out = tmp_path / "pre"
    rc = cli.main(["pretrain", "--corpus", str(tmp_path / "corpus"), "--out", str(out), "--set", *MODEL, "epochs=1",
                   "batch_size=4", "bptt=10", "ckpt_every=1", "precision=fp32"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert rc == 2 and len(errors) == 1, errors
    assert errors[0].startswith("ulmfit pretrain: error: out of memory (Tried to allocate 2.00 GiB")
    assert "lower batch_size" in errors[0] and "max_len" in errors[0]
    assert out.with_name("pre.resume.pt").is_file() and not out.exists()
    assert torch.load(out.with_name("pre.resume.pt"), weights_only=False)["pos"]["step"] == 2


def test_a_stage_script_that_runs_out_of_memory_exits_2_in_one_line():
    code = (f"import sys, torch; sys.path.insert(0, {str(ROOT / 'experiments')!r}); import common\n"
            f"raise torch.OutOfMemoryError({CUDA_OOM!r})")
    result = subprocess.run([sys.executable, "-c", code, "imdb", "ulmfit"], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("-c imdb ulmfit: error: out of memory (Tried to allocate 2.00 GiB")


def test_the_parameter_counts_are_the_models():
    for m, vocab in ((ModelConfig(emb_size=8, hidden_size=12), 30), (ModelConfig(emb_size=16, hidden_size=24, n_layers=2,
                                                                                 head_hidden=7), 50)):
        assert memory.lm_params(m, vocab) == sum(p.numel() for p in LanguageModel(vocab, m).parameters())
        assert memory.clf_params(m, vocab, 5) == sum(p.numel() for p in Classifier(vocab, 5, m).parameters())


@pytest.mark.parametrize("case", [("lm", 20000, 200, 400, 32, 70),  # the vocabulary's parts weigh most
                                  ("lm", 2000, 64, 512, 32, 140), ("clf", 2000, 64, 256, 16, 600)])  # the LSTM's
def test_the_computed_peak_is_within_a_fifth_of_the_measured_one_on_a_cpu(case):
    kind, vocab, emb, hidden, batch, length = case
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memory.py"), "--measure", *map(str, case)],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    m = ModelConfig(emb_size=emb, hidden_size=hidden)
    parts = (memory.lm_memory(m, vocab, batch, length, size=4, device="cpu") if kind == "lm"
             else memory.clf_memory(m, vocab, batch, length, size=4, early_stop=False))
    assert 0.8 < int(result.stdout) / sum(parts.values()) < 1.2, (int(result.stdout), parts)
