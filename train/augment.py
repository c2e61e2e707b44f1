"""Batched self-supervised view augmentations on image tensors, on the images' own device.

Why: the trainer keeps small data sets on-device as uint8 ``(N, C, H, W)`` and makes V
randomly augmented views per batch. Running torchvision per image in a Python loop
costs more than the ResNet18 step on a small CPU and starves a GPU. Here each stage is
a few whole-batch tensor ops with per-sample random parameters, so the same code runs
on CPU (tests, 2-core machines) and GPU (production).

Pipeline of one view (solo-learn / FroSSL recipe, torchvision semantics):
RandomResizedCrop (+ horizontal flip, fused into the sampling grid) -> ColorJitter
(factors and op order drawn per sample) -> RandomGrayscale -> GaussianBlur ->
Solarization -> Normalize.

Reproducibility: every random number of a view comes from one ``torch.rand`` call on
the given ``generator`` (or torch's global RNG), drawn before any data-dependent
work, so the same generator state gives bit-identical views on CPU and training can
resume from a saved generator state.

No host syncs on GPU: no ``.item()``, no data-dependent shapes; per-sample choices are
masks and ``torch.where`` over the whole batch. On CPU, where nothing is asynchronous,
the costly optional stages (hue, blur, grayscale, solarization) run only on the
samples drawn for them (see ``_apply_where``); the results are the same.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .view_config import ViewConfig
from .view_ops import (
    _U_BLUR,
    _U_FLIP,
    _U_GRAY,
    _U_JITTER,
    _U_SIGMA,
    _U_SOLARIZE,
    NUM_UNIFORMS,
    _apply_where,
    _color_jitter,
    _const,
    _crop_boxes,
    _gaussian_blur,
    _grayscale,
    _jitter_ops,
    _jitter_params,
    _mask,
    _pick,
    _resample,
    blur_kernel_size,
    sample_crop_boxes,
)

__all__ = [
    "ViewConfig",
    "augment_view",
    "augment_views",
    "normalize_uint8",
    "sample_crop_boxes",
    "blur_kernel_size",
]

# --------------------------------------------------------------------------- entry points


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (N, C, H, W) tensor, got {shape}")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {images.shape[1]}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images must be uint8 (or float in [0, 1]), got {images.dtype}")


def _to_unit(images: Tensor) -> Tensor:
    """float32 in [0, 1]: uint8 / 255 (as torchvision ``to_dtype(scale=True)``)."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32)


def _normalizer(mean: Sequence[float], std: Sequence[float], channels: int,
                device: torch.device) -> Tuple[Tensor, Tensor]:
    """(scale, shift) with ``(x - mean) / std == x * scale + shift``, cached per device."""
    mean_t, std_t = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean_t) != channels or len(std_t) != channels:
        raise ValueError(
            f"mean and std need {channels} values for {channels}-channel images, "
            f"got mean={mean_t}, std={std_t}"
        )
    if any(not s > 0 for s in std_t):
        raise ValueError(f"std must be > 0, got {std_t}")
    scale = tuple(1.0 / s for s in std_t)
    shift = tuple(-m / s for m, s in zip(mean_t, std_t))
    return _const(scale, device, torch.float32), _const(shift, device, torch.float32)


def _finish(x: Tensor, norm: Tuple[Tensor, Tensor], out_dtype: torch.dtype,
            channels_last: bool, inplace: bool = False) -> Tensor:
    """Normalise (in place if ``inplace``) to ``out_dtype`` in the requested memory format."""
    scale, shift = norm
    y = (x.mul_(scale) if inplace else x * scale).add_(shift)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return y.to(dtype=out_dtype, memory_format=fmt)


def _check_out_dtype(out_dtype: torch.dtype) -> None:
    if not isinstance(out_dtype, torch.dtype) or not out_dtype.is_floating_point:
        raise ValueError(f"out_dtype must be a floating dtype, got {out_dtype!r}")


def _check_generator(generator: Optional[torch.Generator], device: torch.device) -> None:
    if generator is not None and generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device} but the images are on {device}; "
            "pass a generator created on the images' device"
        )


def _view(x: Tensor, cfg: ViewConfig, norm: Tuple[Tensor, Tensor],
          generator: Optional[torch.Generator], out_dtype: torch.dtype,
          channels_last: bool) -> Tensor:
    """One view of float images ``x`` in [0, 1] (never modified in place)."""
    n, channels, height, width = x.shape
    u = torch.rand(n, NUM_UNIFORMS, generator=generator, device=x.device)

    flip = None
    if cfg.flip_prob > 0:
        flip = u[:, _U_FLIP] < cfg.flip_prob
    if cfg.crop:
        boxes = _crop_boxes(u, height, width, cfg.scale, cfg.ratio)
        y = _resample(x, boxes, flip, cfg.size, cfg.interpolation)
    else:
        if (height, width) != (cfg.size, cfg.size):
            raise ValueError(
                f"crop=False needs images of size {cfg.size}x{cfg.size}, got {height}x{width}"
            )
        y = x if flip is None else _apply_where(x, flip, lambda part, index: part.flip(-1))
    owned = y is not x  # `x` is shared by all views: never written

    ops = _jitter_ops(cfg, channels)
    if cfg.jitter_prob > 0 and ops:
        factors, order = _jitter_params(u, cfg, ops, _mask(u[:, _U_JITTER], cfg.jitter_prob))
        y = _color_jitter(y, factors, order, ops, owned)
        owned = True
    if cfg.gray_prob > 0 and channels == 3:
        prev, y = y, _apply_where(y, _mask(u[:, _U_GRAY], cfg.gray_prob),
                                  lambda part, index: _grayscale(part).expand_as(part).contiguous(),
                                  owned)
        owned = owned or y is not prev
    if cfg.blur_prob > 0:
        kernel = cfg.blur_kernel or blur_kernel_size(cfg.size)
        if kernel // 2 >= cfg.size:
            raise ValueError(f"ViewConfig.blur_kernel {kernel} is too large for size {cfg.size}")
        lo, hi = cfg.blur_sigma
        sigma = lo + (hi - lo) * u[:, _U_SIGMA]
        prev, y = y, _apply_where(
            y, _mask(u[:, _U_BLUR], cfg.blur_prob),
            lambda part, index: _gaussian_blur(part, _pick(sigma, index), kernel), owned)
        owned = owned or y is not prev
    if cfg.solarize_prob > 0:
        # Solarize at 0.5: x >= 0.5 -> 1 - x, which on [0, 1] is min(x, 1 - x).
        prev, y = y, _apply_where(y, _mask(u[:, _U_SOLARIZE], cfg.solarize_prob),
                                  lambda part, index: torch.minimum(part, 1.0 - part), owned)
        owned = owned or y is not prev
    return _finish(y, norm, out_dtype, channels_last, owned)


def augment_views(
    images: Tensor,
    cfgs: Sequence[ViewConfig],
    mean: Sequence[float],
    std: Sequence[float],
    generator: Optional[torch.Generator] = None,
    out_dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
) -> List[Tensor]:
    """One augmented, normalised view of ``images`` per config, in order.

    ``images``: uint8 (N, C, H, W), C in {1, 3}, on any device (float in [0, 1] is
    accepted too). Each sample gets its own random crop, flip, jitter, ... per view.
    The images are converted to float once and shared by all views. Views are drawn
    one after the other from ``generator`` (torch's global RNG when None), so
    ``augment_views(x, [a, b], g)`` equals ``[augment_view(x, a, g), augment_view(x, b, g)]``
    for one-value configs; a config's per-view tuples give view ``v`` its ``v``-th value
    (``augment_views(x, [cfg] * 2)`` makes solo-learn's two asymmetric views).
    Returns (N, C, size, size) tensors of ``out_dtype``, channels_last if asked.
    """
    _check_images(images)
    _check_out_dtype(out_dtype)
    _check_generator(generator, images.device)
    cfgs = list(cfgs)
    for cfg in cfgs:
        if not isinstance(cfg, ViewConfig):
            raise ValueError(f"cfgs must hold ViewConfig objects, got {type(cfg).__name__}")
    norm = _normalizer(mean, std, images.shape[1], images.device)
    x = _to_unit(images)
    return [_view(x, cfg.for_view(v), norm, generator, out_dtype, channels_last)
            for v, cfg in enumerate(cfgs)]


def augment_view(
    images: Tensor,
    cfg: ViewConfig,
    mean: Sequence[float],
    std: Sequence[float],
    generator: Optional[torch.Generator] = None,
    out_dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
) -> Tensor:
    """One augmented, normalised view: uint8 (N, C, H, W) -> (N, C, cfg.size, cfg.size).

    See :func:`augment_views`; this is that with a single config.
    """
    return augment_views(images, [cfg], mean, std, generator, out_dtype, channels_last)[0]


def normalize_uint8(
    images: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    size: Optional[int] = None,
    out_dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
) -> Tensor:
    """Eval path: uint8 (N, C, H, W) -> normalised (N, C, size, size), no randomness.

    Resizes (bilinear, align_corners=False, antialiased when shrinking, as torchvision
    ``Resize`` on tensors) only when ``size`` is given and differs from H x W.
    """
    _check_images(images)
    _check_out_dtype(out_dtype)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise ValueError(f"size must be a positive int or None, got {size!r}")
    norm = _normalizer(mean, std, images.shape[1], images.device)
    x = _to_unit(images)
    height, width = x.shape[-2:]
    if size is not None and (height, width) != (size, size):
        shrink = size < height or size < width
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=shrink)
    return _finish(x, norm, out_dtype, channels_last, inplace=x is not images)
