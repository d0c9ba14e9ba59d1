"""Adam with decoupled weight decay (AdamW) and SGD, written out.

torch.optim gives the same updates (tests/test_optim.py checks it) but importing its Optimizer
pulls in torch._dynamo, about 0.9 s in every process; the pipeline starts hundreds of short
training processes. Parameter groups carry their own "lr"; parameters without a gradient (frozen
layer groups) are skipped entirely, as in torch.optim.
"""

import math

import torch


class AdamW:
    def __init__(self, groups, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.param_groups = [dict(g, params=list(g["params"])) for g in groups]
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.state = {}  # id(param) -> (step, exp_avg, exp_avg_sq)

    @torch.no_grad()
    def step(self):
        beta1, beta2 = self.betas
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                step, m, v = self.state.get(id(p)) or (0, torch.zeros_like(p), torch.zeros_like(p))
                step += 1
                p.mul_(1 - group["lr"] * self.weight_decay)
                m.lerp_(p.grad, 1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (v.sqrt() / math.sqrt(1 - beta2**step)).add_(self.eps)
                p.addcdiv_(m, denom, value=-group["lr"] / (1 - beta1**step))
                self.state[id(p)] = (step, m, v)

    def zero_grad(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _ids(self):
        return [id(p) for g in self.param_groups for p in g["params"]]

    def state_dict(self):
        """State by parameter position (ids change between processes)."""
        return {"state": {i: self.state[pid] for i, pid in enumerate(self._ids()) if pid in self.state},
                "lrs": [g["lr"] for g in self.param_groups]}

    def load_state_dict(self, saved):
        ids = self._ids()
        self.state = {ids[i]: s for i, s in saved["state"].items()}
        for g, lr in zip(self.param_groups, saved["lrs"]):
            g["lr"] = lr


class SGD(AdamW):
    """Plain SGD with L2 weight decay (AWD-LSTM's optimizer before averaging starts)."""

    def __init__(self, groups, weight_decay=0.0):
        super().__init__(groups, weight_decay=weight_decay)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad + self.weight_decay * p, alpha=-group["lr"])
