"""``python -m frossl_hub index build|add|info|search|duplicates``."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

__all__ = ["add_index_parser"]


def _build(args: argparse.Namespace) -> int:
    from ..embed_folder import init_from_env
    from .build import BuildOptions, build_index

    rank, world = init_from_env()
    options = BuildOptions(factory=args.factory, dtype=args.dtype, strict=args.strict,
                           overwrite=args.overwrite, batch_size=args.batch_size,
                           workers=args.workers, progress=not args.no_progress)
    manifest = build_index(Path(args.image_dir), args.model, Path(args.out), options, rank, world)
    if rank == 0 and manifest is not None:
        skipped = f", {manifest.skipped} unreadable files skipped" if manifest.skipped else ""
        print(f"wrote {args.out}: {manifest.count} images, {manifest.factory}, recall@10 "
              f"{manifest.recall_at_10}{skipped}")
    return 0


def _add(args: argparse.Namespace) -> int:
    from .build import BuildOptions
    from .update import update_index

    options = BuildOptions(strict=args.strict, batch_size=args.batch_size, workers=args.workers,
                           progress=not args.no_progress)
    report = update_index(Path(args.index), Path(args.image_dir), options)
    print(f"updated {args.index}: {report['count']} images ({report['embedded']} embedded, "
          f"{report['kept']} kept, {report['removed']} removed, {report['skipped']} skipped)")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .store import open_index

    print(json.dumps(open_index(Path(args.index)).describe(), indent=2))
    return 0


def _search(args: argparse.Namespace) -> int:
    from ..hub import load
    from .embedding import check_model, embed_queries, model_identity
    from .store import open_index

    index = open_index(Path(args.index))
    index.check_k(args.k)
    m = index.manifest
    check_model(m.weights_sha256, Path(args.index).name, model_identity(args.model or m.model))
    queries = embed_queries(load(args.model or m.model, num_classes=0), args.images)
    results = index.search(queries, args.k)
    if args.json:
        print(json.dumps([{"query": q, "hits": [h.__dict__ for h in hits]}
                          for q, hits in zip(args.images, results)], indent=2))
        return 0
    for query, hits in zip(args.images, results):
        print(query)
        for hit in hits:
            print(f"  {hit.score:.4f}  {hit.path}")
    return 0


def _duplicates(args: argparse.Namespace) -> int:
    from .duplicates import find_duplicates
    from .store import open_index

    groups = find_duplicates(open_index(Path(args.index)), args.threshold)
    if args.json:
        print(json.dumps(groups, indent=2))
    elif args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["group", "id", "path", "min_score"])
        for g, group in enumerate(groups):
            for item in group["items"]:
                writer.writerow([g, item["id"], item["path"], group["min_score"]])
    else:
        for group in groups:
            print(f"{len(group['items'])} images (similarity >= {group['min_score']}):")
            for item in group["items"]:
                print(f"  {item['path']}")
        print(f"{len(groups)} groups of near-duplicates at threshold {args.threshold}")
    return 0


def _k(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of hits, got {value}")
    return value


def add_index_parser(sub) -> None:
    """Add ``index`` and its commands to the top-level subparsers."""
    from .build import DTYPES
    from .duplicates import DEFAULT_THRESHOLD

    top = sub.add_parser("index", help="search your images: build, add, info, search, duplicates")
    cmds = top.add_subparsers(dest="index_command", required=True)
    p = cmds.add_parser("build", help="embed a folder into a new FAISS search index")
    p.add_argument("image_dir")
    p.add_argument("--model", default="frossl-resnet18-cifar10", help="catalog name or folder")
    p.add_argument("--out", required=True, help="the index folder to write")
    p.add_argument("--factory", default=None,
                   help="FAISS index_factory string (default: Flat when small, else IVF-PQ)")
    p.add_argument("--dtype", default="float16", choices=DTYPES, help="stored embeddings")
    p.add_argument("--overwrite", action="store_true", help="rebuild an existing index")
    _embed_options(p)
    p.set_defaults(func=_build)
    p = cmds.add_parser("add", help="embed new or changed files, drop removed ones")
    p.add_argument("index")
    p.add_argument("image_dir")
    _embed_options(p)
    p.set_defaults(func=_add)
    p = cmds.add_parser("info", help="describe an index (index.json)")
    p.add_argument("index")
    p.set_defaults(func=_info)
    p = cmds.add_parser("search", help="the nearest indexed images of query images")
    p.add_argument("index")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-k", type=_k, default=10, help="hits per query (default 10)")
    p.add_argument("--model", default=None, help="default: the model the index was built with")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_search)
    p = cmds.add_parser("duplicates", help="groups of near-duplicate images")
    p.add_argument("index")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"cosine similarity (default {DEFAULT_THRESHOLD})")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    p.set_defaults(func=_duplicates)


def _embed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict", action="store_true", help="refuse unreadable files (default: skip)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--no-progress", action="store_true")
