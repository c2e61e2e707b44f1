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

import functools
import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ViewConfig",
    "augment_view",
    "augment_views",
    "normalize_uint8",
    "sample_crop_boxes",
    "blur_kernel_size",
]

CROP_TRIES = 10  # torchvision RandomResizedCrop tries this many boxes before the center crop
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision rgb_to_grayscale (ITU-R 601-2 luma)
INTERPOLATIONS = ("bilinear", "bicubic")
# On CPU, run hue and blur only on the samples that get them (data-dependent shapes are
# free there); False forces the GPU path (whole batch + torch.where) everywhere.
_CPU_SUBSETS = True

# Column layout of the per-sample uniforms one view draws in a single torch.rand call.
_U_AREA = slice(0, CROP_TRIES)
_U_RATIO = slice(CROP_TRIES, 2 * CROP_TRIES)
_U_TOP = 2 * CROP_TRIES
_U_LEFT = _U_TOP + 1
_U_FLIP = _U_LEFT + 1
_U_JITTER = _U_FLIP + 1
_U_FACTORS = slice(_U_JITTER + 1, _U_JITTER + 5)  # brightness, contrast, saturation, hue
_U_ORDER = slice(_U_JITTER + 5, _U_JITTER + 9)  # sort keys of the four jitter ops
_U_GRAY = _U_JITTER + 9
_U_BLUR = _U_GRAY + 1
_U_SIGMA = _U_BLUR + 1
_U_SOLARIZE = _U_SIGMA + 1
_NUM_UNIFORMS = _U_SOLARIZE + 1

# Jitter op ids (torchvision ColorJitter's fn_idx order).
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = 0, 1, 2, 3


@dataclass(frozen=True)
class ViewConfig:
    """Random augmentation recipe of one view; probabilities are per sample.

    Defaults: solo-learn's base view (crop scale 0.08-1, jitter 0.4/0.4/0.2/0.1 with
    p=0.8, grayscale p=0.2, flip p=0.5), no blur or solarization; set ``blur_prob`` /
    ``solarize_prob`` per view for BYOL-style asymmetric views. ``crop=False``: the
    images already are ``size`` x ``size`` crops (ImageFolder workers crop on CPU);
    flip and the colour ops still apply. Solarization uses threshold 0.5 on [0, 1]
    values (PIL's ``ImageOps.solarize(img, 128)``, as solo-learn).
    """

    size: int
    scale: Tuple[float, float] = (0.08, 1.0)
    ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    gray_prob: float = 0.2
    blur_prob: float = 0.0
    solarize_prob: float = 0.0
    flip_prob: float = 0.5
    crop: bool = True
    blur_sigma: Tuple[float, float] = (0.1, 2.0)
    blur_kernel: Optional[int] = None  # None: odd ~0.1 * size, at least 3 (23 at 224 px)
    interpolation: str = "bilinear"  # crop resampling: "bilinear" or "bicubic"

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size <= 0:
            raise ValueError(f"ViewConfig.size must be a positive int, got {self.size!r}")
        for name in ("jitter_prob", "gray_prob", "blur_prob", "solarize_prob", "flip_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ViewConfig.{name} must be in [0, 1], got {value!r}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not value >= 0.0:
                raise ValueError(f"ViewConfig.{name} must be >= 0, got {value!r}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"ViewConfig.hue must be in [0, 0.5], got {self.hue!r}")
        lo, hi = _pair("scale", self.scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(
                f"ViewConfig.scale must satisfy 0 < min <= max <= 1, got {self.scale!r}"
            )
        lo, hi = _pair("ratio", self.ratio)
        if not 0.0 < lo <= hi:
            raise ValueError(f"ViewConfig.ratio must satisfy 0 < min <= max, got {self.ratio!r}")
        lo, hi = _pair("blur_sigma", self.blur_sigma)
        if not 0.0 < lo <= hi:
            raise ValueError(
                f"ViewConfig.blur_sigma must satisfy 0 < min <= max, got {self.blur_sigma!r}"
            )
        k = self.blur_kernel
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0):
            raise ValueError(f"ViewConfig.blur_kernel must be None or an odd int >= 1, got {k!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"ViewConfig.interpolation must be one of {INTERPOLATIONS}, "
                f"got {self.interpolation!r}"
            )


def _pair(name: str, value: Sequence[float]) -> Tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"ViewConfig.{name} must be a pair of numbers, got {value!r}") from None
    return lo, hi


def blur_kernel_size(size: int) -> int:
    """Odd Gaussian kernel side ~10% of the image side, at least 3 (BYOL's 23 at 224 px)."""
    k = max(3, int(0.1 * size))
    return k if k % 2 else k + 1


# --------------------------------------------------------------------------- crop boxes


def _crop_boxes(u: Tensor, height: int, width: int, scale: Sequence[float],
                ratio: Sequence[float]) -> Tensor:
    """RandomResizedCrop boxes from uniforms ``u`` (n, >= 2*CROP_TRIES+2) laid out as _U_*.

    Vectorised torchvision ``RandomResizedCrop.get_params``: all tries are drawn at
    once and the first valid one is kept; samples without a valid try get the center
    crop clipped to ``ratio``.
    """
    area = float(height * width)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    target = area * (scale[0] + (scale[1] - scale[0]) * u[:, _U_AREA])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, _U_RATIO])
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = valid.to(torch.uint8).argmax(dim=1, keepdim=True)  # first valid try (0 if none)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    top = torch.floor(u[:, _U_TOP] * (height - h + 1)).clamp_(max=height - h)
    left = torch.floor(u[:, _U_LEFT] * (width - w + 1)).clamp_(max=width - w)

    in_ratio = width / height  # torchvision's fallback: central crop within `ratio`
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    ok = valid.any(dim=1)
    w = torch.where(ok, w, float(fw))
    h = torch.where(ok, h, float(fh))
    top = torch.where(ok, top, float((height - fh) // 2))
    left = torch.where(ok, left, float((width - fw) // 2))
    return torch.stack((left, top, left + w, top + h), dim=1)


def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
) -> Tensor:
    """``n`` RandomResizedCrop boxes ``(x0, y0, x1, y1)`` (float32, whole pixels, end exclusive).

    Same sampling as torchvision (area fraction in ``scale``, log-uniform aspect in
    ``ratio``, 10 tries then center crop) and as :func:`augment_view` uses.
    """
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n, 2 * CROP_TRIES + 2, generator=generator, device=device)
    return _crop_boxes(u, height, width, scale, ratio)


def _sample_coords(start: Tensor, stop: Tensor, size: int, length: int,
                   flip: Optional[Tensor]) -> Tensor:
    """grid_sample coordinates (N, size) resizing pixels [start, stop) of an axis of ``length``.

    Output pixel centres map to ``start + (k + 0.5) * (stop - start) / size - 0.5``
    (align_corners=False), clamped to the box's first/last pixel as when cropping
    first and resizing the crop; mirrored about the box centre where ``flip``.
    """
    k = torch.arange(size, device=start.device, dtype=start.dtype).add_(0.5)
    start, stop = start.unsqueeze(1), stop.unsqueeze(1)
    pix = start + k * ((stop - start) / size) - 0.5
    pix = torch.minimum(torch.maximum(pix, start), stop - 1.0)
    if flip is not None:
        pix = torch.where(flip.unsqueeze(1), start + stop - 1.0 - pix, pix)
    return pix.mul_(2.0 / length).add_(1.0 / length - 1.0)


def _resample(x: Tensor, boxes: Tensor, flip: Optional[Tensor], size: int, mode: str) -> Tensor:
    """Resize each sample's box to ``size`` x ``size``, mirrored where ``flip``.

    One ``grid_sample`` for the whole batch (faster on CPU than ``roi_align`` for
    28-224 px sources), with the separable grid built per sample. Bilinear equals
    torchvision's crop-then-resize (antialias=False) up to float rounding; bicubic's
    outer taps may read one pixel past the box edge.
    """
    n, c, height, width = x.shape
    x0, y0, x1, y1 = boxes.to(x.dtype).unbind(1)
    gx = _sample_coords(x0, x1, size, width, flip)
    gy = _sample_coords(y0, y1, size, height, None)
    grid = torch.stack(
        (gx.unsqueeze(1).expand(n, size, size), gy.unsqueeze(2).expand(n, size, size)), dim=-1
    )
    out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    return out.clamp_(0.0, 1.0) if mode == "bicubic" else out


# --------------------------------------------------------------------------- colour ops


@functools.lru_cache(maxsize=64)
def _const(values: Tuple[float, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
    """(1, len, 1, 1) constant, built once per device: avoids a blocking H2D copy per call."""
    return torch.tensor(values, dtype=dtype, device=device).view(1, -1, 1, 1)


def _grayscale(x: Tensor) -> Tensor:
    """Luma (N, 1, H, W) of RGB (N, 3, H, W) with torchvision's weights; 1-channel as is."""
    n, channels, height, width = x.shape
    if channels == 1:
        return x
    weights = _const(GRAY_WEIGHTS, x.device, x.dtype).view(1, 1, 3)
    return torch.matmul(weights, x.reshape(n, 3, height * width)).view(n, 1, height, width)


def _adjust_hue(x: Tensor, hue: Tensor) -> Tensor:
    """Rotate the HSV hue of RGB (N, 3, H, W) in [0, 1] by ``hue`` (N,) turns.

    Same result as torchvision's rgb->hsv, ``h = (h + hue) % 1``, hsv->rgb, without
    materialising HSV: min, max (value) and chroma are kept, and with the hue ``h`` in
    sixths of a turn each channel is ``min + chroma * clamp(d - 1, 0, 1)``, ``d`` the
    circular distance from ``h`` to the channel's opposite hue (red 3, green 5, blue 1).
    Branch-free arithmetic (no data-dependent ``torch.where``, slow on CPU).
    """
    maxc = x.amax(dim=1, keepdim=True)
    minc = x.amin(dim=1, keepdim=True)
    chroma = maxc - minc
    inv = chroma.clamp(min=1e-30).reciprocal_()  # chroma 0: all numerators below are 0 too
    is_max = torch.sign(x - maxc).add_(1.0)  # 1 where a channel is the max, else 0
    r, g, b = x.unbind(1)
    inv, is_r, is_g = inv.squeeze(1), is_max[:, 0], is_max[:, 1]
    hue_r = (g - b).mul_(inv)  # torchvision's hue sextant per max channel, priority r, g, b
    hue_g = (b - r).mul_(inv).add_(2.0)
    hue_b = (r - g).mul_(inv).add_(4.0)
    h = hue_b.addcmul_(is_g, hue_g - hue_b)
    h = h.addcmul_(is_r, hue_r - h).add_((6.0 * hue).view(-1, 1, 1))  # in [-4, 8]
    h = h.sub_(torch.floor(h.add(1.0).mul_(1.0 / 6.0)).mul_(6.0)).unsqueeze(1)  # in [-1, 5]
    d = (h - _const((3.0, 5.0, 1.0), x.device, x.dtype)).abs_()  # |h - c| in [0, 6]
    d = torch.sub(2.0, d.sub_(3.0).abs_()).clamp_(0.0, 1.0)  # = clamp(min(d, 6 - d) - 1, 0, 1)
    return torch.addcmul(minc, chroma, d)


def _apply_where(x: Tensor, mask: Optional[Tensor],
                 fn: Callable[[Tensor, Optional[Tensor]], Tensor], inplace: bool = False) -> Tensor:
    """``fn`` applied to the samples selected by ``mask`` (N,), the others left as they are.

    ``fn(x_part, index)`` gets the selected samples and their indices (None: all), to
    pick its per-sample parameters. On GPU (or with subsets off) it runs on the whole
    batch and ``torch.where`` keeps the selection: fixed shapes, no host sync. On CPU,
    where there is no device to sync with, it runs on the selected rows only, written
    back into ``x`` itself when ``inplace``.
    """
    if mask is None:
        return fn(x, None)
    if x.device.type == "cpu" and _CPU_SUBSETS:
        index = mask.nonzero().squeeze(1)
        if index.numel() == 0:
            return x
        if index.numel() == x.shape[0]:
            return fn(x, None)
        part = fn(x.index_select(0, index), index)
        return x.index_copy_(0, index, part) if inplace else x.index_copy(0, index, part)
    return torch.where(mask.view(-1, 1, 1, 1), fn(x, None), x)


def _pick(values: Tensor, index: Optional[Tensor]) -> Tensor:
    return values if index is None else values.index_select(0, index)


def _color_jitter(x: Tensor, factors: Tensor, order: Tensor, ops: Sequence[int],
                  inplace: bool = False) -> Tensor:
    """torchvision ColorJitter on a batch with per-sample factors and op order.

    ``factors`` (N, 4): brightness, contrast, saturation multipliers and hue shift
    (identity: 1, 1, 1, 0). ``order`` (N, len(ops)): each row a permutation of the op
    ids ``ops`` (0 brightness, 1 contrast, 2 saturation, 3 hue), in application order.
    Each slot applies, per sample, the op its row names there: the three blends are
    one fused ``clamp(a*x + s*gray + m*mean(gray), 0, 1)`` with per-sample
    coefficients (identity for the others), and hue goes through
    :func:`_apply_where` for the samples whose slot names it. ``inplace``: ``x`` may
    be overwritten (it always is a fresh tensor after the first slot).
    """
    n, channels = x.shape[:2]
    b, c, s, h = (f.view(n, 1, 1, 1) for f in factors.unbind(1))
    hue = factors[:, 3]
    use_gray = _CONTRAST in ops or (_SATURATION in ops and channels == 3)
    use_sat = _SATURATION in ops and channels == 3
    use_hue = _HUE in ops and channels == 3
    for slot in range(order.shape[1]):
        op = order[:, slot].view(n, 1, 1, 1)
        a = torch.where(op == _BRIGHTNESS, b, 1.0)
        if _CONTRAST in ops:
            a = torch.where(op == _CONTRAST, c, a)
        if use_sat:
            a = torch.where(op == _SATURATION, s, a)
        gray = _grayscale(x) if use_gray else None
        x = x.mul_(a) if inplace else x * a
        inplace = True
        if gray is not None and _CONTRAST in ops:
            contrast = torch.where(op == _CONTRAST, 1.0 - c, 0.0)
            x.add_(gray.mean(dim=(-2, -1), keepdim=True) * contrast)
        if gray is not None and use_sat:
            x.addcmul_(gray, torch.where(op == _SATURATION, 1.0 - s, 0.0))
        x = x.clamp_(0.0, 1.0)
        if use_hue:
            x = _apply_where(x, ((op == _HUE) & (h != 0)).view(n),
                             lambda part, index: _adjust_hue(part, _pick(hue, index)), inplace=True)
    return x


def _jitter_ops(cfg: ViewConfig, channels: int) -> Tuple[int, ...]:
    """Jitter ops that can change an image (1-channel images: brightness, contrast)."""
    ops = []
    if cfg.brightness > 0:
        ops.append(_BRIGHTNESS)
    if cfg.contrast > 0:
        ops.append(_CONTRAST)
    if channels == 3 and cfg.saturation > 0:
        ops.append(_SATURATION)
    if channels == 3 and cfg.hue > 0:
        ops.append(_HUE)
    return tuple(ops)


def _jitter_params(u: Tensor, cfg: ViewConfig, ops: Tuple[int, ...],
                   apply: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Per-sample factors (N, 4) and op order (N, len(ops)) as torchvision ColorJitter.

    Factors are uniform in [max(0, 1 - v), 1 + v] (hue: [-v, v]); the order is a
    uniformly random permutation of the enabled ops (argsort of uniform keys).
    Samples not selected by ``apply`` get identity factors.
    """
    lo = [max(0.0, 1.0 - cfg.brightness), max(0.0, 1.0 - cfg.contrast),
          max(0.0, 1.0 - cfg.saturation), -cfg.hue]
    hi = [1.0 + cfg.brightness, 1.0 + cfg.contrast, 1.0 + cfg.saturation, cfg.hue]
    uf = u[:, _U_FACTORS]
    factors = torch.stack([lo[i] + (hi[i] - lo[i]) * uf[:, i] for i in range(4)], dim=1)
    if apply is not None:
        identity = torch.stack([torch.ones_like(uf[:, 0])] * 3 + [torch.zeros_like(uf[:, 0])], 1)
        factors = torch.where(apply.unsqueeze(1), factors, identity)
    keys = u[:, _U_ORDER][:, : len(ops)]
    rank = keys.argsort(dim=1)
    order = rank.clone()
    for pos, op in enumerate(ops):  # map positions in `ops` to op ids, no H2D copy
        order = torch.where(rank == pos, op, order)
    return factors, order


def _gaussian_blur(x: Tensor, sigma: Tensor, kernel: int) -> Tensor:
    """Per-sample Gaussian blur (torchvision ``gaussian_blur``: reflect padding).

    Separable: two depthwise convolutions over the batch folded into channels
    (groups = N * C), each group with its own sample's 1-D kernel.
    """
    n, c, height, width = x.shape
    half = (kernel - 1) * 0.5
    t = torch.linspace(-half, half, kernel, device=x.device, dtype=x.dtype)
    w = torch.exp(-0.5 * (t.unsqueeze(0) / sigma.to(x.dtype).unsqueeze(1)).square())
    w = (w / w.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (N*C, k)
    pad = kernel // 2
    y = F.pad(x.reshape(1, n * c, height, width), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, w.view(n * c, 1, 1, kernel), groups=n * c)
    y = F.conv2d(y, w.view(n * c, 1, kernel, 1), groups=n * c)
    return y.view(n, c, height, width)


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


def _mask(u: Tensor, prob: float) -> Optional[Tensor]:
    """Per-sample Bernoulli(prob) from uniforms; None when prob is 1 (all samples)."""
    return None if prob >= 1.0 else u < prob


def _view(x: Tensor, cfg: ViewConfig, norm: Tuple[Tensor, Tensor],
          generator: Optional[torch.Generator], out_dtype: torch.dtype,
          channels_last: bool) -> Tensor:
    """One view of float images ``x`` in [0, 1] (never modified in place)."""
    n, channels, height, width = x.shape
    u = torch.rand(n, _NUM_UNIFORMS, generator=generator, device=x.device)

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
    ``augment_views(x, [a, b], g)`` equals ``[augment_view(x, a, g), augment_view(x, b, g)]``.
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
    return [_view(x, cfg, norm, generator, out_dtype, channels_last) for cfg in cfgs]


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
