"""Tests for train.augment: batched on-device SSL view augmentations (CPU, fast)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

from train import view_ops
from train.augment import (
    ViewConfig,
    augment_view,
    augment_views,
    blur_kernel_size,
    normalize_uint8,
    sample_crop_boxes,
)

RGB_MEAN, RGB_STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # mean/std that leave [0, 1] values as they are
# Every random stage on, every sample: CIFAR-like strengths.
HEAVY = dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, jitter_prob=1.0,
             gray_prob=0.5, blur_prob=0.5, solarize_prob=0.5)
# Crop = the whole image, nothing random: the view is a plain resize.
PLAIN = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_prob=0.0, gray_prob=0.0,
             blur_prob=0.0, solarize_prob=0.0, flip_prob=0.0)


def _images(n=16, c=3, h=32, w=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w or h), generator=g, dtype=torch.uint8)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _unit(images, cfg, seed=0, **kw):
    """A view in [0, 1] (identity normalisation)."""
    c = images.shape[1]
    return augment_view(images, cfg, UNIT[0][:c], UNIT[1][:c], _gen(seed), **kw)


# --------------------------------------------------------------------------- output format


def test_output_shape_dtype_and_channels_last():
    cfgs = [ViewConfig(32), ViewConfig(24)]
    views = augment_views(_images(8, h=40), cfgs, RGB_MEAN, RGB_STD, _gen())
    assert [tuple(v.shape) for v in views] == [(8, 3, 32, 32), (8, 3, 24, 24)]
    for v in views:
        assert v.dtype == torch.float32
        assert v.is_contiguous(memory_format=torch.channels_last)


def test_out_dtype_and_contiguous_format_on_request():
    v = augment_view(_images(4), ViewConfig(32), RGB_MEAN, RGB_STD, _gen(),
                     out_dtype=torch.bfloat16, channels_last=False)
    assert v.dtype == torch.bfloat16 and v.is_contiguous()


def test_values_before_normalisation_stay_in_unit_range():
    x = _images(32)
    for interpolation in ("bilinear", "bicubic"):
        v = _unit(x, ViewConfig(32, interpolation=interpolation, **HEAVY))
        assert v.min() >= 0.0 and v.max() <= 1.0


def test_normalisation_uses_mean_and_std():
    x = _images(4)
    cfg = ViewConfig(32, **PLAIN)
    unit = _unit(x, cfg)
    normed = augment_view(x, cfg, RGB_MEAN, RGB_STD, _gen())
    expected = TF.normalize(unit, RGB_MEAN, RGB_STD)
    torch.testing.assert_close(normed, expected, atol=1e-5, rtol=0)


def test_one_channel_images():
    x = _images(16, c=1, h=28)
    v = augment_view(x, ViewConfig(28, **HEAVY), (0.286,), (0.353,), _gen())
    assert v.shape == (16, 1, 28, 28) and torch.isfinite(v).all()
    unit = _unit(x, ViewConfig(28, **HEAVY))
    assert unit.min() >= 0.0 and unit.max() <= 1.0


def test_input_is_not_modified():
    x = _images(8)
    before = x.clone()
    augment_views(x, [ViewConfig(32, **HEAVY)] * 2, RGB_MEAN, RGB_STD, _gen())
    assert torch.equal(x, before)
    xf = x.float() / 255  # float input is used as is: must not be written either
    before = xf.clone()
    for jitter_prob in (0.0, 1.0):
        augment_view(xf, ViewConfig(32, crop=False, flip_prob=0.0, gray_prob=0.5, blur_prob=0.5,
                                     solarize_prob=0.5, jitter_prob=jitter_prob), *UNIT, _gen())
        assert torch.equal(xf, before)
    normalize_uint8(xf, *UNIT)
    assert torch.equal(xf, before)


@pytest.mark.parametrize("crop", [True, False])
def test_strided_inputs_give_the_same_views(crop):
    x = _images(8)
    cfg = ViewConfig(32, crop=crop, **HEAVY)
    ref = augment_view(x, cfg, RGB_MEAN, RGB_STD, _gen())
    per_view = torch.stack([x, x.flip(0)], dim=1)  # (N, V, C, H, W) as cropping workers yield
    for strided in (per_view[:, 0], x.contiguous(memory_format=torch.channels_last)):
        torch.testing.assert_close(augment_view(strided, cfg, RGB_MEAN, RGB_STD, _gen()), ref)


@pytest.mark.parametrize("probs", [(1, 0.5, 0.5), (0.5, 1, 1), (1, 1, 0), (0, 0, 1)])
@pytest.mark.parametrize("crop", [True, False])
def test_stage_probability_mixes_run_and_stay_in_range(probs, crop):
    gray, blur, solarize = probs
    cfg = ViewConfig(32, crop=crop, **{**HEAVY, "gray_prob": gray, "blur_prob": blur,
                                       "solarize_prob": solarize})
    v = _unit(_images(16), cfg)
    assert v.shape == (16, 3, 32, 32) and v.min() >= 0.0 and v.max() <= 1.0


# --------------------------------------------------------------------------- randomness


def test_samples_get_independent_views():
    x = _images(1).expand(16, -1, -1, -1).contiguous()  # one image, 16 times
    v = _unit(x, ViewConfig(32, **HEAVY))
    flat = v.flatten(1)
    distinct = {tuple(row.tolist()) for row in flat}
    assert len(distinct) == 16
    boxes = sample_crop_boxes(16, 32, 32, generator=_gen())
    assert len({tuple(b.tolist()) for b in boxes}) > 12


def test_same_seed_same_views_different_seed_different_views():
    x = _images(16)
    cfgs = [ViewConfig(32, **HEAVY), ViewConfig(24)]
    a = augment_views(x, cfgs, RGB_MEAN, RGB_STD, _gen(7))
    b = augment_views(x, cfgs, RGB_MEAN, RGB_STD, _gen(7))
    c = augment_views(x, cfgs, RGB_MEAN, RGB_STD, _gen(8))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not any(torch.equal(p, q) for p, q in zip(a, c))


def test_resuming_from_generator_state_reproduces_views():
    x = _images(8)
    cfg = ViewConfig(32, **HEAVY)
    g = _gen(3)
    augment_view(x, cfg, RGB_MEAN, RGB_STD, g)
    state = g.get_state()
    nxt = augment_view(x, cfg, RGB_MEAN, RGB_STD, g)
    g2 = torch.Generator()
    g2.set_state(state)
    assert torch.equal(augment_view(x, cfg, RGB_MEAN, RGB_STD, g2), nxt)


def test_global_rng_used_without_generator():
    x = _images(8)
    cfg = ViewConfig(32, **HEAVY)
    torch.manual_seed(11)
    a = augment_view(x, cfg, RGB_MEAN, RGB_STD)
    torch.manual_seed(11)
    assert torch.equal(augment_view(x, cfg, RGB_MEAN, RGB_STD), a)


def test_augment_views_equals_consecutive_augment_view_calls():
    x = _images(8)
    cfgs = [ViewConfig(32, **HEAVY), ViewConfig(32, blur_prob=1.0)]
    g = _gen(5)
    one_by_one = [augment_view(x, cfg, RGB_MEAN, RGB_STD, g) for cfg in cfgs]
    together = augment_views(x, cfgs, RGB_MEAN, RGB_STD, _gen(5))
    assert all(torch.equal(p, q) for p, q in zip(one_by_one, together))


def test_cpu_subset_path_matches_gpu_style_masked_path(monkeypatch):
    x = _images(32)
    cfg = ViewConfig(32, **HEAVY)
    subsets = _unit(x, cfg)
    monkeypatch.setattr(view_ops, "_CPU_SUBSETS", False)
    masked = _unit(x, cfg)
    torch.testing.assert_close(subsets, masked, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- geometry


def test_identity_config_is_resize_and_normalise():
    x = _images(6, h=20)
    for size in (20, 32):  # same size, upsampling
        v = augment_view(x, ViewConfig(size, **PLAIN), RGB_MEAN, RGB_STD, _gen())
        ref = normalize_uint8(x, RGB_MEAN, RGB_STD, size=size)
        torch.testing.assert_close(v, ref, atol=1e-4, rtol=0)  # std amplifies float noise


def test_flip_prob_one_with_full_crop_is_flip_of_resized_image():
    x = _images(6, h=20)
    cfg = ViewConfig(32, **{**PLAIN, "flip_prob": 1.0})
    v = _unit(x, cfg)
    resized = F.interpolate(x.float() / 255, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(v, torch.flip(resized, dims=[-1]), atol=1e-5, rtol=0)


def test_flip_without_crop():
    x = _images(6)
    cfg = ViewConfig(32, crop=False, **{**PLAIN, "flip_prob": 1.0})
    torch.testing.assert_close(_unit(x, cfg), torch.flip(x.float() / 255, dims=[-1]))
    with pytest.raises(ValueError, match="crop=False"):
        _unit(x, ViewConfig(24, crop=False))


def test_resample_matches_torchvision_crop_then_resize_and_flip():
    g = _gen(1)
    x = torch.rand(24, 3, 40, 30, generator=g)
    boxes = sample_crop_boxes(24, 40, 30, generator=g)
    flip = torch.rand(24, generator=g) < 0.5
    out = view_ops._resample(x, boxes, flip, 24, "bilinear")
    for i in range(24):
        x0, y0, x1, y1 = (int(v) for v in boxes[i].tolist())
        ref = TF.resized_crop(x[i], y0, x0, y1 - y0, x1 - x0, [24, 24], antialias=False)
        ref = TF.horizontal_flip(ref) if flip[i] else ref
        torch.testing.assert_close(out[i], ref, atol=1e-4, rtol=0)


def test_crop_boxes_are_whole_pixels_inside_image_with_area_in_scale():
    scale, ratio = (0.2, 0.6), (3 / 4, 4 / 3)
    boxes = sample_crop_boxes(4000, 64, 48, scale, ratio, generator=_gen())
    assert boxes.shape == (4000, 4) and torch.equal(boxes, boxes.round())
    x0, y0, x1, y1 = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 48).all() and (y1 <= 64).all()
    w, h = x1 - x0, y1 - y0
    frac = w * h / (64 * 48)
    # w, h are rounded to whole pixels: allow half a pixel on each side.
    slack_lo = (torch.sqrt(torch.tensor(scale[0] * 64 * 48)) - 0.5) ** 2 / (64 * 48)
    assert frac.min() >= slack_lo and frac.max() <= scale[1] * 1.1
    assert frac.min() < scale[0] + 0.03 and frac.max() > scale[1] - 0.03  # range is covered
    aspect = w / h
    assert aspect.min() > ratio[0] * 0.9 and aspect.max() < ratio[1] * 1.1


def test_crop_boxes_fall_back_to_center_crop():
    # Aspect ratios 3-4 never fit a square at 90-100% area: torchvision's fallback is the
    # full-width center crop with the closest allowed ratio.
    boxes = sample_crop_boxes(8, 32, 32, scale=(0.9, 1.0), ratio=(3.0, 4.0), generator=_gen())
    h = round(32 / 3.0)
    expected = torch.tensor([0.0, (32 - h) // 2, 32.0, (32 - h) // 2 + h]).expand(8, 4)
    assert torch.equal(boxes, expected)


def test_crop_box_distribution_matches_torchvision():
    n, height, width = 3000, 32, 32
    ours = sample_crop_boxes(n, height, width, generator=_gen())
    ours_area = ((ours[:, 2] - ours[:, 0]) * (ours[:, 3] - ours[:, 1]) / (height * width))
    ours_log_aspect = torch.log((ours[:, 2] - ours[:, 0]) / (ours[:, 3] - ours[:, 1]))
    rrc = T.RandomResizedCrop(height)
    img = torch.zeros(3, height, width)
    torch.manual_seed(0)
    params = [rrc.make_params([img]) for _ in range(n)]
    tv_area = torch.tensor([p["height"] * p["width"] / (height * width) for p in params])
    tv_log_aspect = torch.tensor([math.log(p["width"] / p["height"]) for p in params])
    assert abs(ours_area.mean() - tv_area.mean()) < 0.02
    assert abs(ours_area.std() - tv_area.std()) < 0.02
    assert abs(ours_log_aspect.mean() - tv_log_aspect.mean()) < 0.02
    assert abs(ours_log_aspect.std() - tv_log_aspect.std()) < 0.02


# --------------------------------------------------------------------------- colour


def test_solarize_prob_one_inverts_bright_pixels():
    x = _images(8)
    plain = _unit(x, ViewConfig(32, **PLAIN))
    solar = _unit(x, ViewConfig(32, **{**PLAIN, "solarize_prob": 1.0}))
    torch.testing.assert_close(solar, torch.where(plain >= 0.5, 1.0 - plain, plain))


def test_gray_prob_one_gives_equal_channels():
    v = _unit(_images(8), ViewConfig(32, gray_prob=1.0, jitter_prob=1.0))
    assert torch.equal(v[:, 0], v[:, 1]) and torch.equal(v[:, 1], v[:, 2])
    colour = _unit(_images(8), ViewConfig(32, gray_prob=0.0, jitter_prob=1.0))
    assert not torch.equal(colour[:, 0], colour[:, 1])


def test_blur_reduces_high_frequency_energy():
    checker = ((torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2 * 255)
    x = checker.to(torch.uint8).expand(8, 3, 32, 32).contiguous()
    sharp = _unit(x, ViewConfig(32, **PLAIN))
    blurred = _unit(x, ViewConfig(32, **{**PLAIN, "blur_prob": 1.0}))

    def hf_energy(v):  # per-sample energy of horizontal pixel differences
        return (v[..., 1:] - v[..., :-1]).square().mean(dim=(1, 2, 3))

    assert (hf_energy(blurred) < 0.9 * hf_energy(sharp)).all()


def test_gaussian_blur_matches_torchvision_per_sample():
    g = _gen(2)
    x = torch.rand(6, 3, 24, 24, generator=g)
    sigma = 0.1 + 1.9 * torch.rand(6, generator=g)
    out = view_ops._gaussian_blur(x, sigma, 5)
    for i in range(6):
        ref = TF.gaussian_blur(x[i], [5, 5], [sigma[i].item()] * 2)
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_blur_kernel_scales_with_image_size():
    assert blur_kernel_size(224) == 23
    assert blur_kernel_size(32) == 3 and blur_kernel_size(28) == 3
    assert all(blur_kernel_size(s) % 2 == 1 for s in range(8, 300))


def test_brightness_factor_bounds():
    x = torch.full((400, 3, 8, 8), 128, dtype=torch.uint8)  # flat grey: only brightness changes it
    cfg = ViewConfig(8, **{**PLAIN, "jitter_prob": 1.0, "brightness": 0.3, "contrast": 0.0,
                          "saturation": 0.0, "hue": 0.0})
    factor = _unit(x, cfg).mean(dim=(1, 2, 3)) / (128 / 255)
    assert factor.min() >= 0.7 - 1e-5 and factor.max() <= 1.3 + 1e-5
    assert factor.min() < 0.75 and factor.max() > 1.25  # the whole range is used
    assert 0.95 < factor.mean() < 1.05


def test_jitter_prob_zero_leaves_colours():
    x = _images(8)
    plain = _unit(x, ViewConfig(32, **PLAIN))
    cfg = ViewConfig(32, **{**PLAIN, "jitter_prob": 0.0, "brightness": 0.8, "hue": 0.5})
    assert torch.equal(_unit(x, cfg), plain)


def test_color_jitter_matches_torchvision_for_every_op_order():
    g = _gen(4)
    orders = torch.tensor(list(itertools.permutations(range(4))))  # all 24 orders
    x = torch.rand(24, 3, 12, 12, generator=g)
    x[0] = 0.5  # grey: hue undefined
    x[1] = (x[1] * 4).round() / 4  # ties between channels
    u = torch.rand(24, 4, generator=g)
    factors = torch.stack([0.2 + 1.6 * u[:, 0], 0.2 + 1.6 * u[:, 1], 0.2 + 1.6 * u[:, 2],
                           u[:, 3] - 0.5], dim=1)
    out = view_ops._color_jitter(x, factors, orders, (0, 1, 2, 3))
    fns = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i in range(24):
        ref = x[i]
        for op in orders[i].tolist():
            ref = fns[op](ref, factors[i, op].item())
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_jitter_order_is_uniform_over_permutations():
    cfg = ViewConfig(32)
    u = torch.rand(4800, view_ops.NUM_UNIFORMS, generator=_gen())
    _, order = view_ops._jitter_params(u, cfg, (0, 1, 2, 3), None)
    counts = torch.zeros(4, 4)
    for slot in range(4):
        counts[slot] = torch.bincount(order[:, slot], minlength=4).float()
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(4800, 4))
    assert ((counts / 4800 - 0.25).abs() < 0.04).all()


# --------------------------------------------------------------------------- eval path


def test_normalize_uint8_without_and_with_resize():
    x = _images(4, h=40)
    out = normalize_uint8(x, RGB_MEAN, RGB_STD)
    ref = TF.normalize(x.float() / 255, RGB_MEAN, RGB_STD)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    assert out.is_contiguous(memory_format=torch.channels_last)
    small = normalize_uint8(x, RGB_MEAN, RGB_STD, size=32)
    ref = TF.normalize(TF.resize(x.float() / 255, [32, 32], antialias=True), RGB_MEAN, RGB_STD)
    torch.testing.assert_close(small, ref, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "field, value",
    [
        ("size", 0), ("size", 32.0), ("scale", (0.5, 0.2)), ("scale", (0.0, 1.0)),
        ("scale", (0.5, 1.5)), ("ratio", (2.0, 1.0)), ("ratio", (0.0, 1.0)),
        ("jitter_prob", 1.5), ("gray_prob", -0.1), ("blur_prob", 2.0), ("solarize_prob", -1.0),
        ("flip_prob", 1.01), ("brightness", -0.1), ("contrast", -1.0), ("saturation", -0.5),
        ("hue", 0.6), ("blur_sigma", (0.0, 1.0)), ("blur_kernel", 4), ("interpolation", "nearest"),
    ],
)
def test_bad_config_raises_value_error_naming_field(field, value):
    kwargs = {"size": 32, field: value}
    with pytest.raises(ValueError, match=field):
        ViewConfig(**kwargs)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: augment_view(x, ViewConfig(32), (0.5,), (0.2,)), "mean and std"),
        (lambda x: augment_view(x, ViewConfig(32), RGB_MEAN, (0.2, 0.0, 0.2)), "std"),
        (lambda x: augment_view(x[0], ViewConfig(32), RGB_MEAN, RGB_STD), "N, C, H, W"),
        (lambda x: augment_view(x[:, :2], ViewConfig(32), RGB_MEAN[:2], RGB_STD[:2]), "channels"),
        (lambda x: augment_view(x.long(), ViewConfig(32), RGB_MEAN, RGB_STD), "uint8"),
        (lambda x: augment_view(x, ViewConfig(32), RGB_MEAN, RGB_STD, out_dtype=torch.int32),
         "out_dtype"),
        (lambda x: augment_views(x, [32], RGB_MEAN, RGB_STD), "ViewConfig"),
        (lambda x: normalize_uint8(x, RGB_MEAN, RGB_STD, size=0), "size"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(_images(2))
