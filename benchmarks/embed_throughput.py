"""Folder embedding throughput (``python -m frossl_hub embed``) against the raw batched forward.

In one process run, on a folder of ``--images`` real JPEGs (default 3000, copied from
``.data/cifar-10-jpeg/test``; synthetic JPEGs of the same size when that is absent, said
in the output):

1. embed: ``frossl_hub.embed_folder.embed_folder``, the function behind the CLI, called
   in-process with the CLI's defaults (batch size, DataLoader workers) and timed end to end:
   listing, decoding and preprocessing in workers, forward passes, writing the .npy. Model
   loading is not timed (it happens once, before).
2. decode + preprocess alone: the same DataLoader over the same dataset class and eval
   transform, no model.
3. raw: the same model's batched forward on the pre-decoded tensors of step 2.

Printed: embed / raw (how much of the model's speed a user gets; no fixed goal), embed /
decode, and what bounds it: "decode-bound" when decoding alone is slower than the forward
pass, else "compute-bound". On a small CPU both stages share the cores, so the combined
bound 1 / (1/decode + 1/raw) is printed too.

Without ``--model`` a randomly initialised model of ``--dataset``'s shape (default
CIFAR-10, 32 px) is published into a temporary folder: speed does not depend on weights.

Examples::

    python benchmarks/embed_throughput.py
    python benchmarks/embed_throughput.py --images 3000 --model runs/c10/published
    python benchmarks/embed_throughput.py --images 24 --batch-size 8 --workers 1 --threads 1  # smoke
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

try:  # `python benchmarks/NAME.py` puts this folder on sys.path; `python -m benchmarks.NAME` does not
    import _common
except ImportError:
    from benchmarks import _common
import numpy as np
import torch

from frossl_hub.cli import build_parser as cli_parser
from frossl_hub.embed_folder import ImageFiles, collate_list, embed_folder, list_images

DEFAULT_SOURCE = _common.REPO / ".data" / "cifar-10-jpeg" / "test"


def cli_defaults() -> argparse.Namespace:
    """What ``python -m frossl_hub embed DIR`` uses when no flag is given."""
    return cli_parser().parse_args(["embed", "IMAGE_DIR"])


def copy_real(source: Path, target: Path, count: int) -> int:
    """``count`` JPEGs spread over ``source`` copied into ``target`` (cycled if too few)."""
    files = list_images(source) if source.is_dir() else []
    if not files:
        return 0
    stride = max(1, len(files) // count)
    picked = files[::stride][:count]
    for i in range(count):
        src = picked[i % len(picked)]
        dst = target / src.parent.name / (f"{i:06d}_{src.name}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return count


def write_synthetic(target: Path, count: int, size: int, seed: int = 0) -> None:
    """JPEGs of smooth gradients plus noise (photo-like, so decoding costs what it would)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    target.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        base = rng.uniform(0, 255, 3) + rng.uniform(-4, 4, 3) * xx[..., None] + rng.uniform(-4, 4, 3) * yy[..., None]
        pixels = np.clip(base + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(target / f"{i:06d}.jpg", quality=90)


def make_folder(target: Path, count: int, source: Path, size: int) -> str:
    if copy_real(source, target, count):
        return f"{count} real JPEGs copied from {source}"
    write_synthetic(target, count, size)
    return f"{count} SYNTHETIC {size}x{size} JPEGs ({source} not found)"


def time_embed(model: torch.nn.Module, folder: Path, out: Path, batch_size: int, workers: int,
               backend: str) -> float:
    start = time.perf_counter()
    _rows, skipped = embed_folder(model, folder, out, batch_size, workers, progress=False, backend=backend)
    elapsed = time.perf_counter() - start
    if skipped:
        raise RuntimeError(f"{len(skipped)} images could not be read, e.g. {skipped[0]}")
    return elapsed


def decode_all(model: torch.nn.Module, folder: Path, batch_size: int, workers: int
               ) -> Tuple[float, List[torch.Tensor]]:
    """Seconds to decode + preprocess every image as embed_folder does (uint8 per image in the
    workers, one normalisation per batch), and the batches."""
    from frossl_hub.inference import BatchTransform

    files = list_images(folder)
    transform = BatchTransform(model)
    start = time.perf_counter()
    loader = torch.utils.data.DataLoader(ImageFiles(files, transform.to_uint8), batch_size=batch_size,
                                         num_workers=workers, collate_fn=collate_list)
    batches = [transform.normalize(torch.stack([t for _, t, _ in batch])) for batch in loader]
    return time.perf_counter() - start, batches


def time_forward(model: torch.nn.Module, batches: Sequence[torch.Tensor], backend: str) -> float:
    """Seconds of embed_folder's forward passes alone (same backend) over pre-decoded batches."""
    from frossl_hub.backends import make_runner

    run = make_runner(model, backend)
    device = next(model.parameters()).device
    with torch.inference_mode():
        run(batches[0])  # warm-up
        _common.sync(device)
        start = time.perf_counter()
        for x in batches:
            run(x)
        _common.sync(device)
    return time.perf_counter() - start


def build_parser() -> argparse.ArgumentParser:
    defaults = cli_defaults()
    parser = argparse.ArgumentParser(
        description="python -m frossl_hub embed (in-process) vs decode alone vs the raw batched forward.")
    parser.add_argument("--images", type=int, default=3000, help="images in the folder (default 3000)")
    parser.add_argument("--model", type=Path, default=None,
                        help="published model folder (default: a random-init model of --dataset in a temp folder)")
    parser.add_argument("--dataset", default="cifar10", help="shape of the random-init model (default cifar10)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help=f"JPEG folder (default {DEFAULT_SOURCE})")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help=f"as the CLI's --batch-size (default {defaults.batch_size})")
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help=f"as the CLI's --workers (default {defaults.workers})")
    parser.add_argument("--device", default=None, help="as the CLI's --device (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, as the CLI)")
    parser.add_argument("--backend", default=defaults.backend, choices=["auto", "torch", "onnxruntime"],
                        help=f"as the CLI's --backend (default {defaults.backend})")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import frossl_hub

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    _common.print_header("embed throughput", [Path(sys.executable).name] + sys.argv, device)
    with tempfile.TemporaryDirectory(prefix="embed-bench-") as tmp:
        root = Path(tmp)
        model_path = args.model or _common.publish_tiny_model(root / "model", args.dataset)
        model = frossl_hub.load(model_path, num_classes=0, device=device)  # as the CLI loads it
        size = int(model.pretrained_cfg["input_size"][-1])
        note = make_folder(root / "images", args.images, args.source, size)
        make_folder(root / "warmup", min(args.images, 2 * args.batch_size), args.source, size)
        print(f"data: {note}")
        print(f"model: {'random-init ' + args.dataset + ' shape, ' if args.model is None else ''}"
              f"{model.pretrained_cfg.get('architecture', type(model).__name__)}, input {size} px, on {device}")
        print(f"embed: frossl_hub.embed_folder.embed_folder in-process (the CLI's code path, model load not timed), "
              f"batch {args.batch_size}, {args.workers} DataLoader workers, backend {args.backend}")
        if args.workers > _common.available_cores():  # torch warns on every loader; say it once
            warnings.filterwarnings("ignore", message="This DataLoader will create")
            print(f"note: {args.workers} workers on {_common.available_cores()} available cores")
        print()

        print("  warm-up ...", file=sys.stderr, flush=True)
        time_embed(model, root / "warmup", root / "warmup.npy", args.batch_size, args.workers, args.backend)
        print("  embed_folder ...", file=sys.stderr, flush=True)
        t_embed = time_embed(model, root / "images", root / "emb.npy", args.batch_size, args.workers, args.backend)
        print("  decode + preprocess alone ...", file=sys.stderr, flush=True)
        t_decode, batches = decode_all(model, root / "images", args.batch_size, args.workers)
        print("  raw forward ...", file=sys.stderr, flush=True)
        t_raw = time_forward(model, batches, args.backend)

    n = args.images
    embed_ips, decode_ips, raw_ips = n / t_embed, n / t_decode, n / t_raw
    shared = 1.0 / (1.0 / decode_ips + 1.0 / raw_ips)
    print(_common.table(["stage", "seconds", "img/s"], [
        ("embed_folder, end to end", f"{t_embed:.2f}", f"{embed_ips:.1f}"),
        (f"decode + preprocess alone ({args.workers} workers)", f"{t_decode:.2f}", f"{decode_ips:.1f}"),
        ("raw forward on pre-decoded tensors", f"{t_raw:.2f}", f"{raw_ips:.1f}"),
        ("serial bound 1/(1/decode + 1/raw)", "", f"{shared:.1f}"),
    ]))
    print()
    bound = "decode-bound" if decode_ips < raw_ips else "compute-bound"
    print(f"embed / raw forward = {embed_ips / raw_ips:.2f}")
    print(f"embed / decode alone = {embed_ips / decode_ips:.2f}")
    print(f"embed / serial bound = {embed_ips / shared:.2f}  (above 1: decoding and forward overlap)")
    print(f"bound: {bound} (decode alone {decode_ips:.0f} img/s vs forward {raw_ips:.0f} img/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
