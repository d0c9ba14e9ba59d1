import torch

from ulmfit.optim import SGD, AdamW


def run(make, steps=5):
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))
    frozen = torch.nn.Parameter(torch.randn(2))
    opt = make([{"params": [a], "lr": 0.01}, {"params": [b, frozen], "lr": 0.003}])
    for _ in range(steps):
        opt.zero_grad()
        ((a @ b).sin().sum() + (b ** 2).sum()).backward()  # `frozen` never gets a gradient
        opt.step()
    return a.detach(), b.detach(), frozen.detach(), opt


def test_adamw_matches_torch():
    ours = run(lambda g: AdamW(g, betas=(0.7, 0.99), weight_decay=0.01))
    ref = run(lambda g: torch.optim.AdamW(g, betas=(0.7, 0.99), weight_decay=0.01))
    for x, y in zip(ours[:3], ref[:3]):
        assert torch.allclose(x, y, rtol=0, atol=1e-7)


def test_sgd_matches_torch():
    ours = run(lambda g: SGD(g, weight_decay=1e-4))
    ref = run(lambda g: torch.optim.SGD(g, weight_decay=1e-4))
    for x, y in zip(ours[:3], ref[:3]):
        assert torch.allclose(x, y, rtol=0, atol=1e-7)


def test_adamw_state_round_trip():
    a, b, frozen, opt = run(lambda g: AdamW(g, betas=(0.7, 0.99)), steps=2)
    saved = opt.state_dict()
    fresh = AdamW([{"params": [a], "lr": 1.0}, {"params": [b, frozen], "lr": 1.0}])
    fresh.load_state_dict(saved)
    assert [g["lr"] for g in fresh.param_groups] == [0.01, 0.003]
    assert fresh.state[id(a)][0] == 2 and id(frozen) not in fresh.state
