"""The FroSSL objective: reference values, properties, precision, validation, parity with lightly."""
import math

import pytest
import torch

from frossl_hub import FroSSLLoss, frossl_loss
from frossl_hub.losses.frossl import frobenius_term, normalize_columns

Z1 = [[1, 2, 0], [0, 1, 1], [2, 0, 1], [1, 1, 1]]
Z2 = [[1, 1, 0], [0, 2, 1], [2, 1, 1], [0, 1, 2]]
Z3 = [[1, 0, 0], [1, 1, 0], [0, 1, 3], [1, 0, 1]]


def t64(rows):
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize(
    "views, kwargs, expected",
    [
        ((Z1, Z2), {}, -1.0060757),
        ((Z1, Z2), {"invariance_weight": 1.4}, -0.9315150),
        ((Z1, Z2, Z3), {}, -0.3426133),
        ((Z1, Z2), {"center": True}, -0.7902577),
    ],
    ids=["v2", "v2-w1.4", "v3", "v2-centered"],
)
def test_reproduces_reference_values(views, kwargs, expected):
    loss = frossl_loss([t64(v) for v in views], **kwargs)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_reproduces_reference_value_when_batch_is_smaller_than_dim():
    a = t64([[1, 2, 3, 4], [-1, 6, 7, 8]])
    b = a.flip(0) * 0.5 + 0.25
    assert frossl_loss([a, b]).item() == pytest.approx(1.8418037, abs=1e-6)


def test_invariance_is_zero_when_all_views_are_equal():
    z = torch.randn(16, 8, dtype=torch.float64)
    _, parts = frossl_loss([z, z.clone(), z.clone()], return_parts=True)
    assert torch.all(parts["invariance"].abs() < 1e-12)


def test_regularizer_lies_between_minus_log_rank_and_zero():
    for n, d in [(32, 8), (8, 32), (16, 16)]:
        u = normalize_columns(torch.randn(n, d, dtype=torch.float64))
        reg = frobenius_term(u).item()
        assert -math.log(min(n, d)) - 1e-9 <= reg <= 1e-12


def test_both_matrix_branches_give_the_same_value():
    u = normalize_columns(torch.randn(12, 5, dtype=torch.float64))
    for cov in (u.T @ u, u @ u.T):
        explicit = 2 * torch.log(torch.linalg.matrix_norm(cov / torch.trace(cov)))
        assert frobenius_term(u).item() == pytest.approx(explicit.item(), abs=1e-12)


def test_effective_rank_is_exp_of_minus_regularizer():
    views = [torch.randn(32, 8) for _ in range(2)]
    _, parts = frossl_loss(views, return_parts=True)
    assert torch.allclose(parts["effective_rank"], torch.exp(-parts["regularizer"]))
    assert parts["regularizer"].shape == (2,) and not parts["regularizer"].requires_grad


def test_gradients_match_finite_differences_in_float64():
    a = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: frossl_loss([x, y]), (a, b))


def test_gradients_are_finite():
    views = [torch.randn(64, 32, requires_grad=True) for _ in range(4)]
    frossl_loss(views).backward()
    assert all(torch.isfinite(v.grad).all() for v in views)


def test_bfloat16_inputs_give_the_float32_value():
    views = [torch.randn(128, 64) for _ in range(2)]
    reference = frossl_loss(views)
    low = frossl_loss([v.bfloat16() for v in views])
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(reference.item(), rel=2e-2, abs=2e-2)


def test_computes_in_float32_under_autocast():
    views = [torch.randn(64, 32) for _ in range(2)]
    reference = frossl_loss(views)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = frossl_loss(views)
    assert under.dtype == torch.float32
    assert under.item() == pytest.approx(reference.item(), abs=1e-5)


def test_float64_inputs_stay_float64():
    assert frossl_loss([t64(Z1), t64(Z2)]).dtype == torch.float64


def test_loss_is_summed_not_averaged_over_views():
    views = [torch.randn(32, 8, dtype=torch.float64) for _ in range(3)]
    loss, parts = frossl_loss(views, return_parts=True)
    assert loss.item() == pytest.approx((parts["regularizer"] + parts["invariance"]).sum().item())


@pytest.mark.parametrize(
    "views, message",
    [
        ([torch.randn(4, 3)], "at least 2 views"),
        ([torch.randn(4, 3), torch.randn(4, 2)], "same shape"),
        ([torch.randn(4, 3, 1), torch.randn(4, 3, 1)], "2-D"),
        ([torch.randn(1, 3), torch.randn(1, 3)], "batch size of at least 2"),
        ([torch.full((4, 3), float("nan")), torch.randn(4, 3)], "NaN"),
    ],
    ids=["one-view", "mismatched", "not-2d", "batch-of-one", "non-finite"],
)
def test_rejects_bad_inputs_with_a_clear_message(views, message):
    with pytest.raises(ValueError, match=message):
        frossl_loss(views)


def test_module_rejects_a_negative_invariance_weight():
    with pytest.raises(ValueError, match="-1"):
        FroSSLLoss(invariance_weight=-1)


@pytest.mark.parametrize("num_views, n, d, w", [(2, 64, 16, 1.0), (3, 16, 64, 1.4), (4, 32, 32, 2.0), (8, 40, 8, 0.5)])
def test_equals_lightly_frossl_loss(num_views, n, d, w):
    lightly_loss = pytest.importorskip("lightly.loss").FroSSLLoss
    torch.manual_seed(num_views * 100 + n)
    views = [torch.randn(n, d, dtype=torch.float64) for _ in range(num_views)]
    ours = FroSSLLoss(invariance_weight=w)(views)
    theirs = lightly_loss(invariance_weight=w)(views)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-9)


def test_gradient_equals_lightly_frossl_loss():
    lightly_loss = pytest.importorskip("lightly.loss").FroSSLLoss
    ours_in = [torch.randn(32, 16, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    theirs_in = [v.detach().clone().requires_grad_() for v in ours_in]
    frossl_loss(ours_in).backward()
    lightly_loss()(theirs_in).backward()
    for a, b in zip(ours_in, theirs_in):
        assert torch.allclose(a.grad, b.grad, atol=1e-10)
