"""Data-parallel language-model training on torch.distributed, started by torchrun.

Every rank holds the whole model and trains on its share of the batch rows; torch's
DistributedDataParallel averages the gradients across ranks during the backward pass, so a step
equals a single-process step on the global batch. Only rank 0 writes checkpoints, logs and
outputs. Without torchrun (no WORLD_SIZE in the environment) everything here is a no-op.
"""

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def world_size():
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank():
    return int(os.environ.get("RANK", "0"))


def is_main():
    return rank() == 0


def setup(device=None):
    """Join the process group once (gloo on CPU, nccl on GPU); returns this rank's device."""
    if world_size() == 1:
        return device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device is None or device == "cuda":
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
    if not dist.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def shard_rows(batch_size):
    """This rank's slice of the batch rows; the batch size must divide evenly."""
    n = world_size()
    if batch_size % n:
        raise ValueError(f"batch size {batch_size} does not divide across {n} processes; use a multiple of {n}")
    per = batch_size // n
    return slice(rank() * per, (rank() + 1) * per)


class Loss(nn.Module):
    """`model.loss` as a module's forward: DistributedDataParallel syncs gradients only after a
    call of its own forward. Holds no parameters of its own; `model` is saved unwrapped."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model.loss(*args)


def data_parallel_loss(model, device="cpu"):
    """`model.loss`, through DistributedDataParallel under torchrun (every parameter of a language
    model gets a gradient at every step, so no search for unused ones); model.loss itself otherwise."""
    if world_size() == 1:
        return model.loss
    device_ids = [torch.device(device)] if torch.device(device).type == "cuda" else None
    return DistributedDataParallel(Loss(model), device_ids=device_ids)


def mean(value):
    """The mean of a number over all ranks."""
    if world_size() == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return t.item() / world_size()


def all_gather(obj):
    """Every rank's `obj` (any picklable value), in rank order; [obj] without torchrun."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier():
    if world_size() > 1 and dist.is_initialized():
        dist.barrier()
