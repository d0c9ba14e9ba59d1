"""`precision: auto`: bf16 where the device runs it natively, fp32 elsewhere; every entry point honours it and runs on
a CPU without bf16, which oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA=AVX2: no bf16 LSTM kernel) imitates on any CPU."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_resume import MODEL, prepared

from ulmfit import precision as P
from ulmfit.config import PRECISIONS, ClfConfig, LMConfig
from ulmfit.precision import PrecisionError

NO_BF16 = {"ONEDNN_MAX_CPU_ISA": "AVX2"}  # oneDNN then has no bf16 LSTM kernel, as on an AVX2-only CPU


@pytest.fixture
def fresh(monkeypatch):
    """The process's decision made anew under the test's environment."""
    def clear():
        for f in (P.resolve, P.native_bf16, P.bf16_runs):
            f.cache_clear()
    clear()
    yield monkeypatch
    clear()


def cli(args, env=None, ok=True):
    result = subprocess.run([sys.executable, "-m", "ulmfit.cli", *map(str, args)], capture_output=True, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1", **(env or NO_BF16)), timeout=300)
    assert (result.returncode == 0) == ok, result.stderr[-3000:]
    return result


def test_auto_is_the_default_of_every_config():
    assert PRECISIONS[0] == "auto" and LMConfig().precision == "auto" and ClfConfig().precision == "auto"


@pytest.mark.parametrize("forced, expected", [("0", "fp32"), ("1", "bf16")])
def test_the_hardware_test_can_be_forced_and_auto_follows_it(fresh, capsys, forced, expected):
    fresh.setenv("ULMFIT_NATIVE_BF16", forced)
    assert P.resolve("auto", "cpu") == expected
    assert P.resolve("auto", "cpu") == expected  # decided once: logged once
    log = capsys.readouterr().err.splitlines()
    assert log == [f"ulmfit: precision auto -> {expected} on cpu ({P.device_name('cpu')}): ULMFIT_NATIVE_BF16={forced}"]
    assert P.describe("auto") == {"precision": expected, "device": "cpu", "device_name": P.device_name("cpu")}
    assert P.resolve("fp32", "cpu") == "fp32"


def test_an_isa_cap_below_bf16_or_a_cpu_without_it_resolves_to_fp32(fresh):
    fresh.delenv("ULMFIT_NATIVE_BF16", raising=False)
    fresh.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    native, why = P.native_bf16("cpu")
    assert not native and ("ONEDNN_MAX_CPU_ISA=AVX512_CORE" in why or "no AVX512-BF16 or AMX" in why)
    fresh.delenv("ONEDNN_MAX_CPU_ISA")
    P.native_bf16.cache_clear()
    fresh.setattr(P, "cpu_flag", lambda name: False)  # an AVX2 or plain AVX-512 CPU
    assert P.native_bf16("cpu") == (False, f"the CPU has no AVX512-BF16 or AMX ({torch.backends.cpu.get_cpu_capability()}): "
                                           "bf16 would be emulated, or has no LSTM kernel")
    assert P.resolve("auto", "cpu") == "fp32"


def test_a_backend_kernel_error_becomes_a_precision_error_and_others_stay_as_they_are(fresh):
    fresh.setenv("ULMFIT_NATIVE_BF16", "1")
    P.resolve("auto", "cpu")
    error = P.kernel_error(RuntimeError("could not create a primitive descriptor for the LSTM forward propagation "
                                        "primitive. Run workload with ONEDNN_VERBOSE=all"))
    assert isinstance(error, PrecisionError) and "bf16 on cpu" in str(error) and "set precision=fp32" in str(error)
    assert P.kernel_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None  # a bug keeps its traceback
    assert P.kernel_error(ValueError("could not create a primitive descriptor")) is None


def test_without_a_bf16_kernel_every_step_runs_in_fp32_and_an_explicit_bf16_is_refused(tmp_path):
    """prepare (own file), pretrain, finetune-lm, train-clf, evaluate, predict and the API, under the ISA cap."""
    probe = "import torch; l = torch.nn.LSTM(4, 4)\nwith torch.autocast('cpu', dtype=torch.bfloat16): l(torch.randn(2, 1, 4))"
    old = subprocess.run([sys.executable, "-c", probe], env=dict(os.environ, **NO_BF16), capture_output=True, text=True)
    assert old.returncode and "primitive descriptor" in old.stderr  # the cap removes the kernel, as on an AVX2 CPU
    lines = [f"{'A great fun film' if i % 2 else 'A dull awful film'} number {i} ." for i in range(60)]
    (tmp_path / "mine.csv").write_text("text,label\n" + "\n".join(f"{t},{'pos' if i % 2 else 'neg'}"
                                                                  for i, t in enumerate(lines)) + "\n")
    cli(["prepare", "--dataset", tmp_path / "mine.csv", "--out", tmp_path / "data", "--set", "min_freq=1"])
    prepared(tmp_path / "corpus", labels=False)
    small = ["--set", *MODEL, "epochs=1", "batch_size=4", "bptt=10"]
    log = cli(["pretrain", "--corpus", tmp_path / "corpus", "--out", tmp_path / "pre", *small]).stderr
    assert "precision auto -> fp32 on cpu" in log
    cli(["finetune-lm", "--data", tmp_path / "data", "--pretrained", tmp_path / "pre", "--out", tmp_path / "lm", *small])
    cli(["train-clf", "--data", tmp_path / "data", "--lm", tmp_path / "lm", "--out", tmp_path / "clf", "--set",
         "epochs=1", "batch_size=4", "bptt=10", "max_len=20"])
    for folder in ("pre", "lm", "clf"):
        metrics = json.loads((tmp_path / folder / "metrics.json").read_text())
        assert (metrics["precision"], metrics["device_name"]) == ("fp32", P.device_name("cpu")), folder
    cli(["evaluate", "--data", tmp_path / "data", "--model", tmp_path / "clf", "--out", tmp_path / "test.json"])
    assert json.loads((tmp_path / "test.json").read_text())["precision"] == "fp32"
    assert len(cli(["predict", "--model", tmp_path / "clf", "A great fun film ."]).stdout.splitlines()) == 1
    api = ("from ulmfit import load_classifier, load_language_model; import sys\n"
           f"c = load_classifier({str(tmp_path / 'clf')!r}); l = load_language_model({str(tmp_path / 'lm')!r})\n"
           "print(c.precision, l.precision, c.predict(['A dull film .'])[0][0], round(l.perplexity('A fun film .'), 1))")
    out = subprocess.run([sys.executable, "-c", api], env=dict(os.environ, **NO_BF16), capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split()[:2] == ["fp32", "fp32"], out.stderr[-2000:]
    refused = cli(["train-clf", "--data", tmp_path / "data", "--out", tmp_path / "bf16", "--set", "epochs=1",
                   "batch_size=4", "precision=bf16"], ok=False)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "precision bf16 cannot run" in refused.stderr and "precision=auto or precision=fp32" in refused.stderr
    assert not (tmp_path / "bf16").exists()
    for command in (["predict", "--model", tmp_path / "clf", "--precision", "bf16", "text"],
                    ["evaluate", "--data", tmp_path / "data", "--model", tmp_path / "clf", "--out", tmp_path / "e.json",
                     "--precision", "bf16"]):
        refused = cli(command, ok=False)
        assert refused.returncode == 2 and "precision=auto or precision=fp32" in refused.stderr
    assert not (tmp_path / "e.json").exists()


def test_a_kernel_error_that_escapes_is_one_line_naming_the_precision_and_the_fix(tmp_path):
    """The hardware test forced to say bf16 where the kernel is missing: the failure is reported, not a traceback."""
    prepared(tmp_path / "corpus", labels=False)
    result = cli(["pretrain", "--corpus", tmp_path / "corpus", "--out", tmp_path / "pre", "--set", *MODEL, "epochs=1",
                  "batch_size=4", "bptt=10"], env={**NO_BF16, "ULMFIT_NATIVE_BF16": "1"}, ok=False)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 2 and len(errors) == 1, result.stderr
    assert errors[0].startswith("ulmfit pretrain: error: a backend kernel failed") and "bf16 on cpu" in errors[0]
    assert "set precision=fp32" in errors[0] and not (tmp_path / "pre").exists()


def test_calibration_runs_in_the_precision_auto_picks(fresh):
    sys.path.insert(0, str(P.__file__).rsplit("/ulmfit/", 1)[0] + "/benchmarks")
    import calibrate

    fresh.setenv("ULMFIT_NATIVE_BF16", "0")
    fresh.setattr(calibrate, "STEPS", 2)
    fresh.setattr(calibrate, "WARMUP", 1)
    result = calibrate.calibrate()
    assert result["precision"] == "fp32" and result["device_name"] == P.device_name("cpu")
    assert np.isfinite(result["tokens_per_s"])
