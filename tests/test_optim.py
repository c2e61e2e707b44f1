"""LARS (solo-learn semantics), its parameter groups, and the warmup-cosine schedule."""
import math

import pytest
import torch
from torch import nn

from train.optim import LARS, param_groups, warmup_cosine


def _reference_lars_step(params, lr, momentum, wd, eta, bufs, lars=True):
    """solo-learn's LARS.step written out per parameter (with host reads, as the original)."""
    for i, p in enumerate(params):
        d_p = p.grad.clone()
        if lars:
            p_norm, g_norm = torch.norm(p).item(), torch.norm(p.grad).item()
            if p_norm != 0 and g_norm != 0:
                lars_lr = eta * p_norm / (g_norm + p_norm * wd + 1e-8)
                lars_lr = min(lars_lr / lr, 1.0)
                d_p = (d_p + wd * p) * lars_lr
        else:
            d_p = d_p + wd * p
        bufs[i] = d_p.clone() if bufs[i] is None else bufs[i] * momentum + d_p
        p.data -= lr * bufs[i]


def test_lars_matches_solo_learns_update_over_several_steps():
    torch.manual_seed(0)
    ours = [torch.randn(8, 4, requires_grad=True), torch.randn(16, requires_grad=True)]
    ref = [p.detach().clone() for p in ours]
    opt = LARS([{"params": ours, "lars": True}], lr=0.5, momentum=0.9, weight_decay=1e-2, eta=0.02)
    bufs = [None, None]
    for step in range(3):
        grads = [torch.randn_like(p) * (step + 1) for p in ours]
        for p, r, g in zip(ours, ref, grads):
            p.grad, r.grad = g.clone(), g.clone()
        opt.step()
        _reference_lars_step(ref, 0.5, 0.9, 1e-2, 0.02, bufs)
        for p, r in zip(ours, ref):
            torch.testing.assert_close(p.detach(), r, rtol=1e-5, atol=1e-6)


def test_trust_ratio_is_clipped_so_the_step_never_exceeds_the_plain_sgd_step():
    p = torch.ones(10, requires_grad=True)
    p.grad = torch.full((10,), 1e-6)  # tiny gradient: unclipped trust ratio would be huge
    LARS([p], lr=0.1, momentum=0.0, eta=0.02).step()
    assert torch.allclose(p.detach(), torch.ones(10) - 0.1 * 1e-6)


def test_zero_gradients_leave_lars_parameters_unchanged():
    p = torch.ones(5, 5, requires_grad=True)
    p.grad = torch.zeros(5, 5)
    LARS([p], lr=0.1, momentum=0.9, weight_decay=1e-4).step()
    assert torch.equal(p.detach(), torch.ones(5, 5))


def test_biases_and_norm_parameters_get_neither_lars_nor_weight_decay():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    groups = param_groups({"m": model}, weight_decay=1e-4, lr=0.3)
    lars, plain = groups[0], groups[1]
    assert lars["lars"] and lars["weight_decay"] == 1e-4
    assert {id(p) for p in lars["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert not plain["lars"] and plain["weight_decay"] == 0.0
    assert {id(p) for p in plain["params"]} == {id(model[0].bias), id(model[1].weight),
                                                 id(model[1].bias), id(model[2].bias)}


def test_online_classifier_gets_its_own_group_without_weight_decay():
    classifier = nn.Linear(4, 3)
    groups = param_groups({"m": nn.Linear(2, 2)}, 1e-4, 0.3, classifier, classifier_lr=0.1)
    assert groups[2]["lr"] == 0.1 and groups[2]["weight_decay"] == 0.0 and not groups[2]["lars"]


def test_warmup_rises_linearly_per_step_then_cosine_reaches_zero():
    total, warm = 100, 10
    factors = [warmup_cosine(s, total, warm) for s in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(b > a for a, b in zip(factors[:9], factors[1:10]))
    assert all(b <= a for a, b in zip(factors[10:], factors[11:]))
    assert warmup_cosine(total, total, warm) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(55, total, warm) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_lars_rejects_bad_settings():
    with pytest.raises(ValueError, match="eta=0"):
        LARS([torch.zeros(1, requires_grad=True)], lr=0.1, eta=0)
