"""FroSSL loss speed (forward + backward): ours against the official code's pattern.

Measures, in one process run, the time of ``frossl_hub.losses.FroSSLLoss`` as the trainer
uses it (``check_finite=False``: no host sync) and of a straightforward reference written
below in the official implementation's pattern: a Python loop over views that reads each
view's covariance trace on the host with ``.item()`` (one device sync per view).

- V sweep (2, 4, 8 views at fixed N x D): the time must grow linearly with V, so time / V
  stays flat; printed, with (time/V at the most views) / (time/V at the fewest), goal <= 1.25.
- N, D sweep at V = 2: the Gram (N x N) or covariance (D x D) side, whichever is smaller.
- Every row: ours / reference time (below 1: ours is faster; the gap is the syncs, so it
  shows on a GPU, hardly on a CPU), and a check that both give the same loss value and
  the same gradients.

Examples::

    python benchmarks/loss_speed.py --device cpu
    python benchmarks/loss_speed.py --device cuda
    python benchmarks/loss_speed.py --repeats 2 --warmup 1 --views 2,4 --sizes 64x128  # smoke
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

try:  # `python benchmarks/NAME.py` puts this folder on sys.path; `python -m benchmarks.NAME` does not
    import _common
except ImportError:
    from benchmarks import _common
import torch
import torch.nn.functional as F
from torch import Tensor

from frossl_hub.losses import FroSSLLoss

LINEAR_GOAL = 1.25  # per-view time at the most views / at the fewest
VALUE_RTOL = 1e-4


def reference_frossl(views: Sequence[Tensor], invariance_weight: float = 1.0) -> Tensor:
    """FroSSL written as the official code does it (the baseline, not a library function).

    Column-normalise each view, then per view in a Python loop: covariance (or Gram) matrix
    divided by its trace read on the host (``.item()``: a device sync per view), regulariser
    ``2 log ||C||_F``, invariance ``V * D * w * mse(view, mean of views)``; summed over views.
    """
    n, d = views[0].shape
    num_views = len(views)
    normalized = [F.normalize(z, p=2, dim=0) for z in views]
    mean_view = torch.mean(torch.stack(normalized), dim=0)
    total: Tensor = torch.zeros((), device=views[0].device)
    for u in normalized:
        cov = u.T @ u if n > d else u @ u.T
        cov = cov / torch.trace(cov).item()
        regularizer = 2 * torch.log(torch.linalg.norm(cov, ord="fro"))
        invariance = num_views * F.mse_loss(u, mean_view) * d * invariance_weight
        total = total + regularizer + invariance
    return total


def make_views(num_views: int, n: int, d: int, device: torch.device, seed: int = 0) -> List[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, d, generator=gen)
    return [(base + 0.5 * torch.randn(n, d, generator=gen)).to(device).requires_grad_()
            for _ in range(num_views)]


def fwd_bwd(loss_fn: Callable[[Sequence[Tensor]], Tensor], views: List[Tensor]) -> Callable[[], None]:
    def run() -> None:
        for v in views:
            v.grad = None
        loss_fn(views).backward()
    return run


def same_result(ours: Callable[[Sequence[Tensor]], Tensor], ref: Callable[[Sequence[Tensor]], Tensor],
                views: List[Tensor]) -> Tuple[bool, float]:
    """Both losses and their gradients agree; returns (agree, relative value difference)."""
    results = []
    for fn in (ours, ref):
        for v in views:
            v.grad = None
        loss = fn(views)
        loss.backward()
        results.append((loss.detach().double(), [v.grad.detach().clone() for v in views]))
    (a, ga), (b, gb) = results
    rel = float((a - b).abs() / b.abs().clamp(min=1e-12))
    grads_ok = all(torch.allclose(x, y, rtol=1e-3, atol=1e-6) for x, y in zip(ga, gb))
    return rel <= VALUE_RTOL and grads_ok, rel


def measure(num_views: int, n: int, d: int, args: argparse.Namespace, device: torch.device
            ) -> Tuple[float, float, bool, float]:
    """(ours s, reference s, same result, relative value difference) of one setting."""
    print(f"  measuring V={num_views} N={n} D={d} ...", file=sys.stderr, flush=True)
    views = make_views(num_views, n, d, device)
    ours = FroSSLLoss(args.invariance_weight, check_finite=False)
    ref = lambda vs: reference_frossl(vs, args.invariance_weight)  # noqa: E731
    agree, rel = same_result(ours, ref, views)
    t_ours = _common.timed(fwd_bwd(ours, views), args.repeats, args.warmup, device)
    t_ref = _common.timed(fwd_bwd(ref, views), args.repeats, args.warmup, device)
    return t_ours, t_ref, agree, rel


def parse_ints(text: str) -> List[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_sizes(text: str) -> List[Tuple[int, int]]:
    out = []
    for item in text.split(","):
        n, d = item.lower().split("x")
        out.append((int(n), int(d)))
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="FroSSL loss forward+backward time vs V, N, D; ours vs the official code's pattern.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--views", type=parse_ints, default=[2, 4, 8], help="V sweep, e.g. 2,4,8")
    parser.add_argument("--n", type=int, default=256, help="batch size N of the V sweep")
    parser.add_argument("--d", type=int, default=1024, help="embedding width D of the V sweep (the projector's)")
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("256x1024,512x1024,1024x1024,256x2048,512x4096"),
                        help="NxD sweep at V=2, comma-separated (default 256x1024,...,512x4096)")
    parser.add_argument("--repeats", type=int, default=20, help="timed forward+backward passes per row")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--invariance-weight", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda asked for, but CUDA is not available here", file=sys.stderr)
        return 2
    _common.print_header("FroSSL loss speed (forward + backward, fp32)", [Path(sys.executable).name] + sys.argv, device)
    print(f"ours: FroSSLLoss(check_finite=False) as in the trainer; reference: per-view Python loop with "
          f".item() on each trace (the official code's pattern); {args.repeats} passes (+{args.warmup} warm-up)\n")

    rows, per_view = [], []
    for v in args.views:
        t_ours, t_ref, agree, rel = measure(v, args.n, args.d, args, device)
        per_view.append(t_ours / v)
        rows.append((f"V={v} N={args.n} D={args.d}", f"{1e3 * t_ours:.2f}", f"{1e3 * t_ours / v:.2f}",
                     f"{1e3 * t_ref:.2f}", f"{1e3 * t_ref / v:.2f}", f"{t_ours / t_ref:.2f}",
                     f"{'yes' if agree else 'NO'} ({rel:.1e})"))
    for n, d in args.sizes:
        t_ours, t_ref, agree, rel = measure(2, n, d, args, device)
        rows.append((f"V=2 N={n} D={d} ({'Gram NxN' if n <= d else 'cov DxD'})", f"{1e3 * t_ours:.2f}",
                     f"{1e3 * t_ours / 2:.2f}", f"{1e3 * t_ref:.2f}", f"{1e3 * t_ref / 2:.2f}",
                     f"{t_ours / t_ref:.2f}", f"{'yes' if agree else 'NO'} ({rel:.1e})"))
    print(_common.table(["setting", "ours ms", "ours ms/V", "ref ms", "ref ms/V", "ours/ref", "same value (rel diff)"],
                        rows))
    print()
    if len(per_view) >= 2:
        growth = per_view[-1] / per_view[0]
        print(_common.fmt_ratio(f"per-view time, V={args.views[-1]} / V={args.views[0]}", growth,
                                f"<= {LINEAR_GOAL}, linear in V", growth <= LINEAR_GOAL))
    mean_ratio = sum(float(r[5]) for r in rows) / len(rows)
    print(f"ours / reference time, mean over rows = {mean_ratio:.2f}  (below 1: ours faster; "
          "no goal on CPU, where a sync costs little)")
    all_same = all(r[6].startswith("yes") for r in rows)
    print(f"same loss values and gradients in every row: {'yes' if all_same else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
