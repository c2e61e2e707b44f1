"""The command line of ``python -m train.transfer``: flags to ``TransferOptions``, domain
errors to one ``error:`` line and exit status 2."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from frossl_hub.hub import DTYPES

from ..data.user_folder import DEFAULT_VAL_FRACTION
from .run import MODES, TransferOptions

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train.transfer",
        description="Fit a classifier on your labelled images (DIR/<class>/..., or DIR/train + "
                    "DIR/val) from any hub model, and publish it as a servable folder.")
    parser.add_argument("--model", required=True, metavar="NAME_OR_PATH",
                        help="catalog name, published folder, hf-hub:ORG/NAME or a timm-written folder "
                             "(resolved like frossl_hub.load)")
    parser.add_argument("--data-dir", required=True, type=Path, metavar="DIR",
                        help="ImageFolder tree of your labelled images")
    parser.add_argument("--out", required=True, type=Path, help="the published folder to write")
    parser.add_argument("--mode", default="linear", choices=MODES,
                        help="linear: a head on frozen, cached features; finetune: the whole backbone")
    parser.add_argument("--shots", default="all", metavar="K,K,...",
                        help="images per class to train on, e.g. 1,5,10,all (each k: 5 seeded draws, "
                             "mean ± std on the full val split); the largest k is published")
    parser.add_argument("--image-size", type=int, default=None, metavar="N",
                        help="input side (default: the size the model was trained at)")
    parser.add_argument("--val-fraction", type=float, default=None, metavar="F",
                        help=f"held out per class when there is no DIR/val (default {DEFAULT_VAL_FRACTION:g}; "
                             "0: no val split, nothing measured)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="stored weights")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    parser.add_argument("--name", default=None, help="model name (default PARENT-FOLDER)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (fitting, fine-tuning)")
    parser.add_argument("--workers", type=int, default=4, help="image-decoding workers")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 on a busy machine: small fits slow down when "
                             "their threads wait for cores)")
    parser.add_argument("--no-progress", action="store_true")
    tune = parser.add_argument_group("--mode finetune")
    tune.add_argument("--epochs", type=int, default=10)
    tune.add_argument("--batch-size", type=int, default=64)
    tune.add_argument("--lr", type=float, default=0.01, help="the head's peak learning rate")
    tune.add_argument("--backbone-lr-scale", type=float, default=0.1,
                      help="the backbone's learning rate as a fraction of the head's")
    tune.add_argument("--warmup-epochs", type=int, default=1)
    tune.add_argument("--max-steps", type=int, default=None,
                      help="stop each run after this many steps (the schedule still spans --epochs); "
                           "its checkpoints stay for --resume")
    tune.add_argument("--resume", action="store_true",
                      help="continue an interrupted finetune from its checkpoints (OUT.partial/)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from frossl_hub.hub import ChecksumError, ModelNotFoundError

    from ..checkpoint import CheckpointError
    from ..data import DatasetError
    from .data import TransferError
    from .run import run_transfer
    from .shots import format_table

    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    opts = TransferOptions(
        model=args.model, data_dir=args.data_dir, out=args.out, mode=args.mode, shots=args.shots,
        image_size=args.image_size, val_fraction=args.val_fraction, dtype=args.dtype,
        overwrite=args.overwrite, seed=args.seed, device=args.device, workers=args.workers,
        progress=not args.no_progress, name=args.name, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, backbone_lr_scale=args.backbone_lr_scale, warmup_epochs=args.warmup_epochs,
        resume=args.resume, max_steps=args.max_steps)
    try:
        record = run_transfer(opts)
    except (DatasetError, TransferError, ModelNotFoundError, ChecksumError, CheckpointError,
            FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; `--resume` continues a finetune from its checkpoints", file=sys.stderr)
        return 130
    print(format_table(record["shots"]))
    print(f"published {args.out}")
    return 0
