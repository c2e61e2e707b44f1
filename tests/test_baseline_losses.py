"""SimCLR, Barlow Twins and VICReg baselines: parity with lightly, multi-view, dtypes, registry."""
from __future__ import annotations

import dataclasses
import doctest
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from lightly.loss import BarlowTwinsLoss as LightlyBarlowTwinsLoss
from lightly.loss import NTXentLoss
from lightly.loss import VICRegLoss as LightlyVICRegLoss

from frossl_hub import BarlowTwinsLoss, FroSSLLoss, SimCLRLoss, VICRegLoss
from frossl_hub.losses import barlow_twins, simclr, vicreg  # the modules, for their doctests
from frossl_hub.losses import (
    barlow_twins_loss,
    barlow_twins_multiview_loss,
    simclr_loss,
    vicreg_loss,
    vicreg_multiview_loss,
)
from frossl_hub.losses.vicreg import covariance_term, invariance_term, variance_term
from frossl_hub.objectives import OBJECTIVES, ObjectiveSpec, get_objective

SHAPES = [(2, 3), (8, 16), (32, 8), (17, 64)]  # N < D, N > D, odd N
TOL = {torch.float64: 1e-6, torch.float32: 1e-5}
LOSS_CLASSES = [SimCLRLoss, BarlowTwinsLoss, VICRegLoss]


def _views(num_views, n, d, dtype=torch.float32, seed=0, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, d, generator=gen, dtype=torch.float64)
    views = [base + 0.5 * torch.randn(n, d, generator=gen, dtype=torch.float64)
             for _ in range(num_views)]
    return [v.to(dtype).requires_grad_(requires_grad) for v in views]


def _assert_close(actual, expected, dtype):
    tol = TOL[dtype]
    assert actual.dtype == expected.dtype == dtype
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


# ---------------------------------------------------------------- parity with lightly


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("temperature", [0.2, 0.5])
def test_simclr_matches_lightly_ntxent(n, d, dtype, temperature):
    z_a, z_b = _views(2, n, d, dtype)
    expected = NTXentLoss(temperature=temperature, memory_bank_size=0)(z_a, z_b)
    _assert_close(SimCLRLoss(temperature)([z_a, z_b]), expected, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,d", SHAPES)
def test_barlow_matches_lightly(n, d, dtype):
    z_a, z_b = _views(2, n, d, dtype)
    expected = LightlyBarlowTwinsLoss(lambda_param=0.0051, gather_distributed=False)(z_a, z_b)
    _assert_close(BarlowTwinsLoss()([z_a, z_b]), expected, dtype)
    _assert_close(barlow_twins_loss(z_a, z_b, lambda_offdiag=0.0051), expected, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,d", SHAPES)
def test_vicreg_matches_lightly(n, d, dtype):
    z_a, z_b = _views(2, n, d, dtype)
    expected = LightlyVICRegLoss(lambda_param=25, mu_param=25, nu_param=1)(z_a, z_b)
    _assert_close(VICRegLoss()([z_a, z_b]), expected, dtype)


def test_vicreg_terms_match_lightly_terms():
    from lightly.loss import vicreg_loss as lightly_vicreg

    z_a, z_b = _views(2, 16, 8, torch.float64)
    expected_invariance = lightly_vicreg.invariance_loss(z_a, z_b)
    _assert_close(invariance_term(z_a, z_b), expected_invariance, torch.float64)
    _assert_close(variance_term(z_a), lightly_vicreg.variance_loss(z_a), torch.float64)
    _assert_close(covariance_term(z_a), lightly_vicreg.covariance_loss(z_a), torch.float64)


def test_barlow_scale_loss_multiplies_the_loss():
    z_a, z_b = _views(2, 16, 8, torch.float64)
    unscaled = barlow_twins_loss(z_a, z_b)
    _assert_close(barlow_twins_loss(z_a, z_b, scale_loss=0.1), 0.1 * unscaled, torch.float64)


# ---------------------------------------------------------------- multi-view


def _solo_learn_simclr(views, temperature):
    """solo-learn's simclr_loss_func (single process), written out with exp as there."""
    z = F.normalize(torch.cat(views), dim=-1)
    indexes = torch.arange(views[0].shape[0]).repeat(len(views))
    sim = torch.exp(z @ z.T / temperature)
    pos_mask = (indexes[:, None] == indexes[None, :]).fill_diagonal_(False)
    neg_mask = indexes[:, None] != indexes[None, :]
    pos, neg = (sim * pos_mask).sum(1), (sim * neg_mask).sum(1)
    return -torch.log(pos / (pos + neg)).mean()


@pytest.mark.parametrize("num_views", [2, 3, 4])
def test_simclr_multiview_matches_solo_learn(num_views):
    views = _views(num_views, 12, 8, torch.float64)
    expected = _solo_learn_simclr(views, 0.2)
    _assert_close(SimCLRLoss(0.2)(views), expected, torch.float64)


@pytest.mark.parametrize("num_views", [3, 4])
def test_barlow_multiview_is_mean_over_pairs(num_views):
    views = _views(num_views, 12, 8, torch.float64)
    pairs = itertools.combinations(views, 2)
    expected = torch.stack([barlow_twins_loss(a, b, 0.0051, 0.1) for a, b in pairs]).mean()
    _assert_close(barlow_twins_multiview_loss(views, 0.0051, 0.1), expected, torch.float64)


@pytest.mark.parametrize("num_views", [3, 4])
def test_vicreg_multiview_is_mean_over_pairs_of_lightly(num_views):
    views = _views(num_views, 12, 8, torch.float64)
    lightly_loss = LightlyVICRegLoss(lambda_param=25, mu_param=25, nu_param=1)
    expected = torch.stack([lightly_loss(a, b) for a, b in itertools.combinations(views, 2)]).mean()
    _assert_close(vicreg_multiview_loss(views), expected, torch.float64)


@pytest.mark.parametrize("loss_cls", LOSS_CLASSES)
@pytest.mark.parametrize("num_views", [2, 3, 5])
def test_loss_is_symmetric_under_view_permutation(loss_cls, num_views):
    views = _views(num_views, 10, 6, torch.float64, seed=num_views)
    loss_fn = loss_cls()
    reference = loss_fn(views)
    for order in itertools.islice(itertools.permutations(range(num_views)), 1, 8):
        _assert_close(loss_fn([views[i] for i in order]), reference, torch.float64)


@pytest.mark.parametrize("loss_cls", LOSS_CLASSES)
def test_forward_returns_scalar_for_list_and_tuple_of_views(loss_cls):
    views = _views(3, 8, 4)
    for container in (list, tuple):
        loss = loss_cls()(container(views))
        assert loss.shape == torch.Size([]) and torch.isfinite(loss)


# ---------------------------------------------------------------- precision


@pytest.mark.parametrize("loss_cls", LOSS_CLASSES)
def test_bf16_inputs_give_the_fp32_value(loss_cls):
    views_bf16 = [v.to(torch.bfloat16) for v in _views(3, 32, 16)]
    loss_fn = loss_cls()
    loss = loss_fn(views_bf16)
    expected = loss_fn([v.float() for v in views_bf16])
    _assert_close(loss, expected, torch.float32)


@pytest.mark.parametrize("loss_cls", LOSS_CLASSES)
def test_autocast_bf16_does_not_lower_precision(loss_cls):
    views = _views(2, 32, 16)
    loss_fn = loss_cls()
    expected = loss_fn(views)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = loss_fn(views)
    _assert_close(loss, expected, torch.float32)


@pytest.mark.parametrize("loss_cls", LOSS_CLASSES)
def test_float64_inputs_stay_float64(loss_cls):
    assert loss_cls()(_views(2, 8, 4, torch.float64)).dtype == torch.float64


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("loss_cls", LOSS_CLASSES)
@pytest.mark.parametrize("num_views", [2, 3])
def test_gradients_are_finite_and_reach_every_view(loss_cls, num_views):
    views = _views(num_views, 16, 8, requires_grad=True)
    loss_cls()(views).backward()
    for view in views:
        assert view.grad is not None
        assert torch.isfinite(view.grad).all()
        assert view.grad.abs().sum() > 0


# ---------------------------------------------------------------- validation

BAD_VIEWS = [
    ([torch.randn(8, 4)], "got 1"),
    (torch.randn(2, 8, 4), "Tensor"),
    ([torch.randn(8, 4, 2), torch.randn(8, 4, 2)], "(8, 4, 2)"),
    ([torch.randn(8, 4), torch.randn(8, 5)], "(8, 5)"),
    ([torch.randn(8, 4), torch.randn(7, 4)], "(7, 4)"),
    ([torch.randn(1, 4), torch.randn(1, 4)], "got 1"),
]


@pytest.mark.parametrize("loss_cls", LOSS_CLASSES)
@pytest.mark.parametrize("views,shown", BAD_VIEWS)
def test_bad_views_raise_value_error_showing_them(loss_cls, views, shown):
    with pytest.raises(ValueError) as info:
        loss_cls()(views)
    assert shown in str(info.value)


BAD_HYPERPARAMETERS = [
    (SimCLRLoss, {"temperature": 0.0}, "0.0"),
    (SimCLRLoss, {"temperature": 1e-9}, "1e-09"),
    (SimCLRLoss, {"temperature": -0.5}, "-0.5"),
    (SimCLRLoss, {"temperature": math.nan}, "nan"),
    (BarlowTwinsLoss, {"lambda_offdiag": -0.1}, "-0.1"),
    (BarlowTwinsLoss, {"lambda_offdiag": math.inf}, "inf"),
    (BarlowTwinsLoss, {"scale_loss": 0.0}, "0.0"),
    (BarlowTwinsLoss, {"scale_loss": -2.0}, "-2.0"),
    (VICRegLoss, {"sim_weight": -1.0}, "sim_weight"),
    (VICRegLoss, {"var_weight": math.nan}, "nan"),
    (VICRegLoss, {"cov_weight": -3.0}, "-3.0"),
    (VICRegLoss, {"eps": 0.0}, "0.0"),
]


@pytest.mark.parametrize("loss_cls,kwargs,shown", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_raise_value_error_showing_them(loss_cls, kwargs, shown):
    with pytest.raises(ValueError) as info:
        loss_cls(**kwargs)
    assert shown in str(info.value)


def test_functional_forms_validate_hyperparameters_too():
    z_a, z_b = _views(2, 8, 4)
    with pytest.raises(ValueError, match="0.0"):
        simclr_loss([z_a, z_b], temperature=0.0)
    with pytest.raises(ValueError, match="-1"):
        barlow_twins_loss(z_a, z_b, lambda_offdiag=-1.0)
    with pytest.raises(ValueError, match="-1"):
        vicreg_loss(z_a, z_b, sim_weight=-1.0)


# ---------------------------------------------------------------- docs


@pytest.mark.parametrize("module", [simclr, barlow_twins, vicreg])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, raise_on_error=False, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- objectives registry

EXPECTED_OBJECTIVES = {  # how to train each (lr, weight decay) is tested with the recipes
    "frossl": (FroSSLLoss, (2048, 2048, 1024)),
    "simclr": (SimCLRLoss, (2048, 256)),
    "barlow": (BarlowTwinsLoss, (2048, 2048, 2048)),
    "vicreg": (VICRegLoss, (2048, 2048, 2048)),
}


def test_registry_lists_the_four_objectives():
    assert set(OBJECTIVES) == set(EXPECTED_OBJECTIVES)
    assert all(isinstance(spec, ObjectiveSpec) for spec in OBJECTIVES.values())


@pytest.mark.parametrize("name", sorted(EXPECTED_OBJECTIVES))
def test_registry_builds_each_loss_with_its_recipe(name):
    loss_cls, dims = EXPECTED_OBJECTIVES[name]
    spec = get_objective(name)
    loss_fn = spec.make_loss()
    assert type(loss_fn) is loss_cls
    for key, value in spec.loss_kwargs.items():
        assert getattr(loss_fn, key) == value
    assert spec.projector_dims == dims
    assert spec.source.startswith("solo-learn scripts/pretrain/cifar/")
    views = _views(2, 8, spec.embedding_dim)
    assert loss_fn(views).shape == torch.Size([])


def test_registry_loss_hyperparameters():
    assert dict(get_objective("simclr").loss_kwargs) == {"temperature": 0.2}
    assert dict(get_objective("barlow").loss_kwargs) == {
        "lambda_offdiag": 0.0051, "scale_loss": 0.1}
    assert dict(get_objective("vicreg").loss_kwargs) == {
        "sim_weight": 25.0, "var_weight": 25.0, "cov_weight": 1.0}


def test_make_loss_kwargs_override_the_recipe():
    assert get_objective("simclr").make_loss(temperature=0.1).temperature == 0.1
    assert get_objective("barlow").make_loss(scale_loss=1.0).lambda_offdiag == 0.0051


@pytest.mark.parametrize("name", sorted(EXPECTED_OBJECTIVES))
def test_make_projector_has_the_spec_dims(name):
    spec = get_objective(name)
    projector = spec.make_projector(in_dim=512)
    widths = tuple(m.out_features for m in projector if isinstance(m, torch.nn.Linear))
    assert widths == spec.projector_dims and projector.out_dim == spec.embedding_dim


def test_get_objective_is_case_insensitive():
    assert get_objective(" VICReg ") is OBJECTIVES["vicreg"]


def test_unknown_objective_lists_valid_names():
    with pytest.raises(ValueError) as info:
        get_objective("byol")
    message = str(info.value)
    assert "'byol'" in message
    assert all(name in message for name in EXPECTED_OBJECTIVES)


def test_objective_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        OBJECTIVES["simclr"].projector_dims = (1,)
    with pytest.raises(TypeError):
        OBJECTIVES["simclr"].loss_kwargs["temperature"] = 1.0
