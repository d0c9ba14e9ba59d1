"""The precision a run computes in: bf16 where the device runs it natively, fp32 elsewhere.

`precision: auto` (the default of every config, profile, command and API call) is decided once per
process and device, and logged in one line with its reason:

- a GPU: bf16 from compute capability 8 (Ampere) on, fp32 before it (bf16 would be emulated);
- a CPU: bf16 when it has AVX512-BF16 or AMX-BF16, oneDNN may use them (ONEDNN_MAX_CPU_ISA does not
  cap it below AVX512_CORE_BF16) and a tiny bf16 LSTM step runs; fp32 otherwise. Without those
  instructions oneDNN has no bf16 LSTM kernel below AVX-512, and emulates bf16 above it, 4 to 50
  times slower than fp32 for a matmul.

ULMFIT_NATIVE_BF16=0 (or 1) takes the place of the hardware test, so that the fp32 path can be
tested on any machine. An explicit `bf16` runs where bf16 runs at all, emulated or not, and is
refused in one line where the kernel is missing.
"""

import os
import platform
import re
import sys
from functools import lru_cache

import torch

from .config import ConfigError

# oneDNN's ISA names below the first with native bf16 (AVX512_CORE_BF16)
NO_BF16_ISAS = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
# a RuntimeError with one of these came from a backend's kernels, not from this suite's code
BACKEND_ERROR = re.compile(r"primitive descriptor|oneDNN|mkldnn|cuDNN|CUDNN_STATUS|CUBLAS_STATUS|not implemented for "
                           r"'BFloat16'|no kernel image", re.IGNORECASE)

CPU_OOM = re.compile(r"DefaultCPUAllocator: (can't allocate memory|not enough memory)")
# the parts of torch's out-of-memory message worth one line: what was asked for and what the card has
OOM_DETAILS = re.compile(r"Tried to allocate [\d.]+ \w+|GPU \d+ has a total capacity of [\d.]+ \w+ of which [\d.]+ "
                         r"\w+ is free|you tried to allocate \d+ bytes")


class PrecisionError(ConfigError):
    """The device cannot run the requested precision, or a kernel failed in it; the message names the fix."""


def check_device(device):
    """`device` as torch names it (None: cuda when available, else cpu); anything this suite cannot run on is refused
    in one line naming the choices."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    name = str(device)
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise ConfigError(f"device {name!r} is not one this suite runs on; use cpu or cuda (cuda:N for the N-th GPU)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name}: CUDA is not available on this machine; use cpu (or leave the device out)")
    if ":" in name and int(name.split(":")[1]) >= torch.cuda.device_count():
        raise ConfigError(f"device {name}: this machine has {torch.cuda.device_count()} GPU(s); use cuda:0 to "
                          f"cuda:{torch.cuda.device_count() - 1}")
    return name


def device_type(device):
    return torch.device(device or "cpu").type


@lru_cache(maxsize=None)
def device_name(device="cpu"):
    """'Intel(R) Xeon(R) Processor @ 2.80GHz' or 'NVIDIA H100 80GB HBM3': what a report names the machine by."""
    if device_type(device) == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flag(name):
    """torch's own CPU feature test (cpuinfo), False where this torch lacks it."""
    test = getattr(torch.cpu, f"_is_{name}_supported", None)
    return bool(test and test())


@lru_cache(maxsize=None)
def bf16_runs(kind):
    """Whether a bf16 LSTM step (forward and backward, as training runs it) works on device type `kind`."""
    try:
        with torch.random.fork_rng(devices=[]):
            lstm = torch.nn.LSTM(8, 8).to(kind)
            x = torch.randn(3, 2, 8, device=kind)
            with torch.autocast(kind, dtype=torch.bfloat16):
                out = lstm(x)[0] @ torch.ones(8, 8, device=kind)
            out.float().sum().backward()
        return True
    except RuntimeError:
        return False


@lru_cache(maxsize=None)
def native_bf16(kind):
    """(True if bf16 is the faster precision on device type `kind`, the reason in a few words)."""
    forced = os.environ.get("ULMFIT_NATIVE_BF16", "")
    if forced in ("0", "1"):
        return forced == "1", f"ULMFIT_NATIVE_BF16={forced}"
    if kind == "cuda":
        major, minor = torch.cuda.get_device_capability()
        if major < 8:
            return False, f"compute capability {major}.{minor} has no native bf16 (Ampere, 8.0, and later do)"
        return True, f"compute capability {major}.{minor} has native bf16"
    if kind != "cpu":
        return False, f"{kind} devices run fp32 here"
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    native = [name for name, flag in (("AMX-BF16", "amx_tile"), ("AVX512-BF16", "avx512_bf16")) if cpu_flag(flag)]
    if not native:
        return False, (f"the CPU has no AVX512-BF16 or AMX ({torch.backends.cpu.get_cpu_capability()}): bf16 would be "
                       "emulated, or has no LSTM kernel")
    if isa in NO_BF16_ISAS:
        return False, f"ONEDNN_MAX_CPU_ISA={isa} keeps oneDNN from the CPU's {native[0]}"
    if not bf16_runs(kind):
        return False, f"the CPU has {native[0]} but a bf16 LSTM step fails in this torch build"
    return True, f"the CPU has {native[0]}"


USED = {}  # device type -> the precision this process resolved for it, for the message of a kernel error


@lru_cache(maxsize=None)
def resolve(precision, device="cpu"):
    """The precision a run on `device` computes in: fp32 or bf16. 'auto' is logged once per process and device."""
    kind = device_type(device)
    if precision == "auto":
        native, why = native_bf16(kind)
        precision = "bf16" if native else "fp32"
        print(f"ulmfit: precision auto -> {precision} on {kind} ({device_name(device)}): {why}", file=sys.stderr)
    elif precision == "bf16" and not bf16_runs(kind):
        raise PrecisionError(f"precision bf16 cannot run on this {kind} ({device_name(device)}; "
                             f"{native_bf16(kind)[1]}): set precision=auto or precision=fp32")
    elif precision not in ("fp32", "bf16"):
        raise PrecisionError(f"unknown precision {precision!r}; use auto, fp32 or bf16")
    USED[kind] = precision
    return precision


def describe(precision, device="cpu"):
    """What a stage's metrics record of the machine and the precision it ran in."""
    return {"precision": resolve(precision, device), "device": device_type(device), "device_name": device_name(device)}


def autocast(precision, device="cpu"):
    """Run a block in `precision` (auto, fp32 or bf16) on `device`."""
    kind = device_type(device)
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=resolve(precision, device) == "bf16")


class OutOfMemory(ConfigError):
    """A run needed more accelerator (or host) memory than there is; the message names the knobs that lower it."""


def out_of_memory(error):
    """The one-line OutOfMemory for torch's out-of-memory error (a RuntimeError), None for any other error."""
    if not (isinstance(error, torch.OutOfMemoryError) or (isinstance(error, RuntimeError) and CPU_OOM.search(str(error)))):
        return None
    found = [m.group(0) for m in OOM_DETAILS.finditer(str(error))]
    return OutOfMemory(f"out of memory ({'; '.join(found) or str(error).strip().splitlines()[0][:120]}): lower "
                       "batch_size (every training step) or max_len (classifiers: the tokens trained through) with "
                       "--set or in params, or use a card with more memory (README: Accelerator memory); the resume "
                       "checkpoint is kept: run again unchanged to resume from it (a changed batch_size starts over)")


def kernel_error(error):
    """A one-line error for torch's out-of-memory error (see out_of_memory) or a PrecisionError naming the device,
    the precision and the fix for a backend kernel's RuntimeError that escaped a run; None for any other error (ours
    keep their own message, a bug its traceback)."""
    oom = out_of_memory(error)
    if oom or not isinstance(error, RuntimeError) or not BACKEND_ERROR.search(str(error)):
        return oom
    used = ", ".join(f"{p} on {kind} ({device_name(kind)})" for kind, p in USED.items()) or "no precision resolved yet"
    fix = "set precision=fp32 (or auto)" if "bf16" in USED.values() else "check that this torch build supports the device"
    first = str(error).strip().splitlines()[0].split(". ")[0][:160]
    return PrecisionError(f"a backend kernel failed ({first}) running {used}; {fix}")
