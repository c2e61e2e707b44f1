"""Near-duplicate detection (``index duplicates``): precision and recall on planted copies.

A folder of real images gets, for a known subset, four altered copies each: re-encoded
(JPEG quality 60), resized (1.5x), cropped (a 10% border off each side) and mirrored
(left-right). ``index build`` embeds it all with a model; ``find_duplicates`` groups it at
each threshold; a predicted pair is right when both images come from the same original.
Printed: precision and recall of the pairs per threshold, per kind of copy, and the lowest
threshold whose precision is >= 0.95 (where a user should start).

Examples::

    python benchmarks/index_duplicates.py                         # CIFAR-10 test, 2000 images, 200 planted
    python benchmarks/index_duplicates.py --source /usr/share/datasets/fashion-mnist --images 300
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

try:
    import _common
except ImportError:
    from benchmarks import _common
from PIL import Image, ImageOps

KINDS = ("jpeg", "resized", "cropped", "flipped")
THRESHOLDS = (0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99)
Pair = Tuple[str, str]


def alter(image: Image.Image, kind: str) -> Image.Image:
    """One planted copy of ``image``."""
    w, h = image.size
    if kind == "resized":
        return image.resize((w * 3 // 2, h * 3 // 2), Image.BICUBIC)
    if kind == "cropped":
        return image.crop((w // 10, h // 10, w - w // 10, h - h // 10))
    if kind == "flipped":
        return ImageOps.mirror(image)
    return image  # jpeg: the same pixels, re-encoded at quality 60 when saved


def plant(files: Sequence[Path], root: Path, out: Path, every: int) -> Dict[str, str]:
    """Copy ``files`` (relative to ``root``) into ``out``, plus altered copies of every
    ``every``-th one in ``out/copies/``. Returns {copy path: original path} (relative)."""
    truth = {}
    for i, f in enumerate(files):
        rel = f.relative_to(root).as_posix()
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())
        if i % every:
            continue
        with Image.open(f) as opened:
            image = opened.convert("L" if opened.mode == "L" else "RGB")
        for kind in KINDS:
            copy = out / "copies" / kind / f"{i:06d}.jpg"
            copy.parent.mkdir(parents=True, exist_ok=True)
            alter(image, kind).save(copy, "JPEG", quality=60 if kind == "jpeg" else 90)
            truth[copy.relative_to(out).as_posix()] = rel
    return truth


def true_pairs(truth: Dict[str, str]) -> Set[Pair]:
    groups: Dict[str, List[str]] = {}
    for copy, original in truth.items():
        groups.setdefault(original, [original]).append(copy)
    return {tuple(sorted(p)) for g in groups.values() for p in itertools.combinations(g, 2)}


def predicted_pairs(groups: List[dict]) -> Set[Pair]:
    return {tuple(sorted(p)) for g in groups
            for p in itertools.combinations([i["path"] for i in g["items"]], 2)}


def precision_recall(pred: Set[Pair], truth: Set[Pair]) -> Tuple[float, float]:
    hit = len(pred & truth)
    return (hit / len(pred) if pred else 1.0), (hit / len(truth) if truth else 1.0)


def evaluate(index, truth: Dict[str, str], thresholds: Sequence[float] = THRESHOLDS
             ) -> List[Tuple[float, float, float, Dict[str, float]]]:
    """(threshold, precision, recall, recall per kind) rows."""
    from frossl_hub.index import find_duplicates

    want = true_pairs(truth)
    rows = []
    for t in thresholds:
        pred = predicted_pairs(find_duplicates(index, t))
        p, r = precision_recall(pred, want)
        per_kind = {}
        for kind in KINDS:
            kind_pairs = {tuple(sorted((c, o))) for c, o in truth.items() if f"/{kind}/" in f"/{c}"}
            per_kind[kind] = len(pred & kind_pairs) / max(1, len(kind_pairs))
        rows.append((t, p, r, per_kind))
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    from frossl_hub.embed_folder import list_images
    from frossl_hub.index import BuildOptions, build_index, open_index

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=str(_common.REPO / ".data" / "cifar-10-jpeg" / "test"))
    parser.add_argument("--model", default="frossl-resnet18-cifar10")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--every", type=int, default=10, help="plant copies of every N-th image")
    args = parser.parse_args(argv)
    _common.print_header("Near-duplicates: precision and recall on planted copies", [sys.executable, *sys.argv])
    source = Path(args.source)
    files = list_images(source)
    files = files[:: max(1, len(files) // args.images)][: args.images]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        truth = plant(files, source, folder, args.every)
        build_index(folder, args.model, Path(tmp) / "idx", BuildOptions(progress=False))
        index = open_index(Path(tmp) / "idx")
        print(f"{len(files)} images from {source}, {len(truth)} planted copies of "
              f"{len(truth) // len(KINDS)} of them; model {args.model}\n")
        rows = evaluate(index, truth)
    print(_common.table(["threshold", "precision", "recall", *[f"recall {k}" for k in KINDS]],
                        [[t, f"{p:.3f}", f"{r:.3f}", *[f"{v:.3f}" for v in kinds.values()]]
                         for t, p, r, kinds in rows]))
    start = next((t for t, p, _, _ in rows if p >= 0.95), None)
    print(f"\nlowest threshold with precision >= 0.95: {start}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
