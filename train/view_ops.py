"""The batched tensor operations one augmented view is made of (see ``train.augment``).

Crop boxes and their resampling, colour jitter, grayscale, Gaussian blur: each runs on a
whole batch with per-sample parameters taken from one row of uniforms per sample, laid out
as the ``_U_*`` columns below, so a view is reproducible from its generator state.
"""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from .view_config import ViewConfig

__all__ = ["CROP_TRIES", "GRAY_WEIGHTS", "NUM_UNIFORMS", "sample_crop_boxes", "blur_kernel_size"]

CROP_TRIES = 10  # torchvision RandomResizedCrop tries this many boxes before the center crop
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision rgb_to_grayscale (ITU-R 601-2 luma)
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
NUM_UNIFORMS = _U_SOLARIZE + 1

# Jitter op ids (torchvision ColorJitter's fn_idx order).
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = 0, 1, 2, 3


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


def _jitter_ops(cfg: "ViewConfig", channels: int) -> Tuple[int, ...]:
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


def _jitter_params(u: Tensor, cfg: "ViewConfig", ops: Tuple[int, ...],
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



def _mask(u: Tensor, prob: float) -> Optional[Tensor]:
    """Per-sample Bernoulli(prob) from uniforms; None when prob is 1 (all samples)."""
    return None if prob >= 1.0 else u < prob

