"""Is a candidate model measurably better than the model it would replace?

Both models' linear heads classify the same images of the official evaluation split of their
data set. The script prints each top-1 and McNemar's exact test on the images exactly one of
the two gets right: a paired test, so the luck of which images happen to be in the test split
cancels. A bundled file is replaced only by a higher candidate (issue 19); this says whether
"higher" is more than that luck.

    python benchmarks/compare_models.py frossl-resnet18-fashion-mnist runs/fm2/published
"""
from __future__ import annotations

import argparse
import math
import sys
from fractions import Fraction
from typing import Optional, Sequence, Tuple

import torch
from PIL import Image

try:  # run as a script (python benchmarks/compare_models.py) or as a module
    import _common
except ImportError:
    from benchmarks import _common

import frossl_hub
from frossl_hub.hub import ChecksumError, ModelNotFoundError
from train.data import DatasetError, load_arrays

ALPHA = 0.05  # the verdict's significance level


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p: under "equally good", each of the n discordant images is
    right for either model with probability 1/2, so the smaller count is Binomial(n, 1/2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2 ** n)))


def predictions(name_or_path: str, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The model's linear-head class for each uint8 image (N, C, H, W), through its own
    preprocessing (``frossl_hub.get_transform``), as the service would see the image."""
    model = frossl_hub.load(name_or_path).eval()
    transform = frossl_hub.get_transform(model)
    mode = "L" if images.shape[1] == 1 else "RGB"
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            pil = [Image.fromarray(img.squeeze(0).numpy() if mode == "L" else img.permute(1, 2, 0).numpy(), mode)
                   for img in batch]
            out.append(model(torch.stack([transform(p) for p in pil])).argmax(1))
    return torch.cat(out)


def compare(baseline: str, candidate: str, data_dir: Optional[str], limit: Optional[int],
            batch_size: int) -> Tuple[str, bool]:
    """The report's text, and whether the candidate is measurably better."""
    dataset, candidate_dataset = _common.dataset_of(baseline), _common.dataset_of(candidate)
    if candidate_dataset != dataset:
        raise ValueError(f"{candidate} was trained on {candidate_dataset}, {baseline} on {dataset}")
    test = load_arrays(dataset, data_dir, "test")
    images, labels = test.images[:limit], test.labels[:limit]
    right = {key: predictions(src, images, batch_size) == labels
             for key, src in (("baseline", baseline), ("candidate", candidate))}
    only_candidate = int((right["candidate"] & ~right["baseline"]).sum())
    only_baseline = int((right["baseline"] & ~right["candidate"]).sum())
    p = mcnemar_exact_p(only_candidate, only_baseline)
    better = only_candidate > only_baseline and p < ALPHA
    top1 = {key: 100 * float(r.float().mean()) for key, r in right.items()}
    lines = [
        f"data: {dataset}, official evaluation split, {len(labels)} images",
        f"baseline   {baseline}: linear-head top-1 {top1['baseline']:.2f}%",
        f"candidate  {candidate}: linear-head top-1 {top1['candidate']:.2f}%",
        f"candidate - baseline = {top1['candidate'] - top1['baseline']:+.2f} points",
        f"right only with the candidate: {only_candidate}, only with the baseline: {only_baseline}",
        f"McNemar exact two-sided p = {p:.3f}",
        "verdict: " + ("measurably better" if better else f"not measurably better (needs higher and p < {ALPHA})"),
    ]
    return "\n".join(lines), better


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", help="the model now in use: catalog name or published folder")
    parser.add_argument("candidate", help="the model that would replace it")
    parser.add_argument("--data-dir", default=None, help="the data set's folder (default: its usual place)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)
    _common.print_header("compare models", sys.argv)
    try:
        text, _better = compare(args.baseline, args.candidate, args.data_dir, args.limit, args.batch_size)
    except (ModelNotFoundError, ChecksumError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
