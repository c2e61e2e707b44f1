"""`python -m frossl_hub`: list, info, verify, embed, export, convert, cache, index."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Sequence

from .backends import BACKENDS
from .onnx_export import DEFAULT_OPSET
from .stems import STEMS

if TYPE_CHECKING:
    from .caches import CacheEntry

__all__ = ["main", "build_parser"]


def _cmd_list(args: argparse.Namespace) -> int:
    from .catalog import CATALOG, list_models

    names = list_models(args.pattern, pretrained=args.pretrained)
    width = max((len(n) for n in names), default=10)
    for name in names:
        entry = CATALOG[name]
        top1 = entry.metrics.get("linear_top1")
        score = f"linear top-1 {100 * top1:.2f}%" if top1 is not None else ""
        print(f"{name:<{width}}  {entry.timm_name:<40}  {entry.status:<16}  {score}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .catalog import get_entry
    from .hub import ModelNotFoundError, read_sums, resolve

    info = {}
    try:
        entry = get_entry(args.name)
        info.update(entry.to_dict())
    except RuntimeError:
        entry = None
    try:
        resolved = resolve(args.name, check=False)
        info["found_at"] = str(resolved.folder)
        info["source"] = resolved.source
        info["files"] = sorted(read_sums(resolved.folder)) or sorted(p.name for p in resolved.folder.iterdir())
        for key in ("architecture", "num_classes"):
            info.setdefault(key, resolved.config[key])
        info.setdefault("input_size", resolved.config["pretrained_cfg"].get("input_size"))
        frossl = resolved.config.get("frossl", {})
        if frossl.get("metrics"):
            info["card_metrics"] = frossl["metrics"]
        card = resolved.folder / "README.md"
        if card.is_file():
            lines = card.read_text(encoding="utf-8").splitlines()
            title = next((line[2:].strip() for line in lines if line.startswith("# ")), "")
            info["card"] = f"{card} ({title})"
    except (ModelNotFoundError, ValueError) as exc:
        if entry is None:
            raise
        info["found_at"] = None
        info["how_to_get"] = str(exc).split("To get it: ", 1)[-1]
    print(json.dumps(info, indent=2))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .hub import verify

    for name, digest in verify(args.name).items():
        print(f"OK  {digest}  {name}")
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    import torch

    from .embed_folder import embed_folder, index_path, init_from_env, walk_images
    from .hub import load

    walk = walk_images(Path(args.image_dir))  # a missing path or a non-image fails before loading
    rank, world = init_from_env()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and world > 1:
        device = f"cuda:{rank % max(1, torch.cuda.device_count())}"
    model = load(args.model, num_classes=0, device=device)
    rows, skipped = embed_folder(model, Path(args.image_dir), Path(args.out), args.batch_size, args.workers,
                                 args.normalize, rank, world, progress=not args.no_progress,
                                 backend=args.backend, walk=walk)
    for path, reason in skipped:
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    if rank == 0:
        notes = [f"{walk.others} non-image file{'s' if walk.others != 1 else ''} skipped"] if walk.others else []
        if skipped:
            notes.append(f"{len(skipped)} unreadable file{'s' if len(skipped) != 1 else ''} skipped"
                         + (" on rank 0" if world > 1 else ""))
        print(f"wrote {args.out} and {index_path(Path(args.out))}" + (f" ({'; '.join(notes)})" if notes else ""))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .hub import load
    from .onnx_export import export_onnx, sidecar_path

    model = load(args.model, num_classes=0 if args.embedding_only else None)
    out = Path(args.out or f"{Path(str(args.model)).name}.onnx")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the .onnx file to write.")
    export_onnx(model, out, opset=args.opset, dtype=args.dtype)
    print(f"wrote {out} and {sidecar_path(out)}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    out = convert_checkpoint(args.checkpoint, args.source, args.out, args.dataset, args.arch, args.dtype,
                             args.overwrite)
    print(f"wrote {out}")
    return 0


def _entry_row(entry: "CacheEntry", now: float) -> str:
    from .caches import age, human_size

    about = f"{entry.source} ({entry.detail})" if entry.source else entry.detail
    return f"{entry.kind:<9} {human_size(entry.size):>10}  {age(entry.modified, now):<16} {entry.name}  {about}"


def _cmd_cache_list(args: argparse.Namespace) -> int:
    import time

    from .caches import cache_root, human_size, scan_cache

    root = cache_root()
    entries = [e for e in scan_cache(root) if args.kind in (None, e.kind)]
    if not entries:
        print(f"the cache {root} holds nothing{f' of kind {args.kind}' if args.kind else ''} (0 B)")
        return 0
    now = time.time()
    print(f"{'KIND':<9} {'SIZE':>10}  {'MODIFIED':<16} NAME  SOURCE (DETAIL)")
    for entry in entries:
        print(_entry_row(entry, now))
    total = sum(e.size for e in entries)
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {human_size(total)} in {root}")
    return 0


def _selected(entries: List["CacheEntry"], selectors: Sequence[str]) -> List["CacheEntry"]:
    """The entries named by ``selectors``: an entry's name, or a data folder (its decode caches).

    Raises:
        ValueError: a selector that matches nothing (then nothing is deleted).
    """
    chosen: List["CacheEntry"] = []
    for selector in selectors:
        folder = str(Path(selector).expanduser().resolve())
        hits = [e for e in entries if selector in (e.name, e.source) or e.source == folder]
        if not hits:
            raise ValueError(f"no cache entry is named {selector!r} or was decoded from it; "
                             "`python -m frossl_hub cache list` shows them")
        chosen += [e for e in hits if e not in chosen]
    return chosen


def _cmd_cache_clear(args: argparse.Namespace) -> int:
    from .caches import cache_root, delete_entries, human_size, scan_cache

    root = cache_root()
    entries = [e for e in scan_cache(root) if args.kind in (None, e.kind)]
    chosen = _selected(entries, args.entries) if args.entries else entries
    if args.dry_run:
        count, freed = len(chosen), sum(e.size for e in chosen)
    else:
        count, freed = delete_entries(chosen)
    for entry in chosen:
        print(f"{'would delete' if args.dry_run else 'deleted'} {entry.kind}/{entry.name} "
              f"({human_size(entry.size)})")
    verb = "would free" if args.dry_run else "freed"
    print(f"{verb} {human_size(freed)}: {count} entr{'y' if count == 1 else 'ies'} in {root}")
    return 0


def _add_cache_parser(sub: Any) -> None:
    from .caches import KINDS

    p = sub.add_parser("cache", help="show or free the decode caches and ONNX exports",
                       description="The frossl-hub cache: $FROSSL_HUB_CACHE, else "
                                   "$XDG_CACHE_HOME/frossl_hub, else ~/.cache/frossl_hub.")
    cache = p.add_subparsers(dest="cache_command", required=True)
    q = cache.add_parser("list", help="every entry with its size, age and source")
    q.add_argument("--kind", choices=KINDS, default=None, help="only this kind of entry")
    q.set_defaults(func=_cmd_cache_list)
    q = cache.add_parser("clear", help="delete entries (all of them when none is named)")
    q.add_argument("entries", nargs="*", metavar="ENTRY",
                   help="an entry's NAME from `cache list`, or a data folder: its decode caches")
    q.add_argument("--kind", choices=KINDS, default=None, help="only this kind of entry")
    q.add_argument("--dry-run", action="store_true", help="say what would be freed, delete nothing")
    q.set_defaults(func=_cmd_cache_clear)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m frossl_hub",
                                     description="FroSSL ResNet18 models: list, inspect, verify, embed, export, convert; "
                                                 "the cache.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="catalog models")
    p.add_argument("pattern", nargs="?", default=None, help="wildcard, e.g. '*cifar*'")
    p.add_argument("--pretrained", action="store_true", help="only models with published weights")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("info", help="card summary, metrics, files and status of a model")
    p.add_argument("name", help="catalog name or folder")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("verify", help="check a model's checksums")
    p.add_argument("name", help="catalog name or folder")
    p.set_defaults(func=_cmd_verify)
    p = sub.add_parser("embed", help="embed a folder of images to an N×512 .npy")
    p.add_argument("image_dir", help="folder searched recursively for images (other files are "
                                     "skipped and counted), or one image file")
    p.add_argument("--model", default="frossl-resnet18-cifar10")
    p.add_argument("--out", default="embeddings.npy")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--device", default=None)
    p.add_argument("--normalize", action="store_true", help="L2-normalise each embedding")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="auto: ONNX Runtime on the CPU, PyTorch on CUDA (default auto)")
    p.set_defaults(func=_cmd_embed)
    p = sub.add_parser("export", help="a model as one ONNX graph (embedding + logits outputs)")
    p.add_argument("model", help="catalog name or folder")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--out", default=None, help="the .onnx file (default: ./NAME.onnx)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                   help="graph precision; float16 weights are exported as float32 unless asked")
    p.add_argument("--embedding-only", action="store_true", help="leave out the probe head (no logits)")
    p.set_defaults(func=_cmd_export)
    p = sub.add_parser("convert", help="solo-learn / official / torchvision checkpoint -> published folder")
    p.add_argument("checkpoint")
    p.add_argument("--from", dest="source", required=True, choices=["solo-learn", "official", "torchvision"])
    p.add_argument("--dataset", required=True, help="data set the weights belong to (input spec, labels)")
    p.add_argument("--arch", default=None, choices=list(STEMS),
                   help="timm architecture (default: from conv1's kernel size)")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_convert)
    _add_cache_parser(sub)
    from .index.cli import add_index_parser

    add_index_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .convert import ConversionError
    from .hub import ChecksumError, ModelNotFoundError

    try:
        return args.func(args)
    except (ModelNotFoundError, ChecksumError, ConversionError, OSError, RuntimeError,
            ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
