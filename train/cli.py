"""`python -m train`: pretrain → linear probe → publish, with every recipe field overridable."""
from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from frossl_hub.objectives import list_objectives
from frossl_hub.runtime import dist_env
from frossl_hub.specs import DATASET_SPECS, FOLDER

from .data import FolderOptions
from .data.user_folder import DEFAULT_VAL_FRACTION, LABEL_MODES, MAX_AUTO_SIZE
from .recipes import Recipe, get_recipe, setting_types

__all__ = ["main", "build_parser", "recipe_from_args"]

# recipe settings the command line does not expose as overrides (they have their own flags)
_HIDDEN_FIELDS = {"dataset", "method"}


def _add_recipe_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("recipe overrides (default: the paper's recipe for --dataset)")
    for name, hint in setting_types().items():
        if name in _HIDDEN_FIELDS:
            continue
        flag = "--" + name.replace("_", "-")
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        tuples = [a for a in args if typing.get_origin(a) is tuple or a is tuple]
        if typing.get_origin(hint) is tuple or tuples:
            inner = typing.get_args(tuples[0] if tuples else hint)[0]
            group.add_argument(flag, type=inner, nargs="+", default=None, metavar="X")
        elif hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            group.add_argument(flag, type=args[0], default=None, metavar=args[0].__name__.upper())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Pretrain a ResNet18 with FroSSL (or a baseline objective), evaluate it with a "
                    "linear probe and publish it as a timm-loadable safetensors folder.",
    )
    parser.add_argument("--dataset", required=True, type=str.lower,
                        choices=sorted(DATASET_SPECS) + [FOLDER],
                        help="data set (its recipe is the default); folder: your own images")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding the data set in its official layout "
                             "(Fashion-MNIST default: /usr/share/datasets/fashion-mnist), or your "
                             "folder of images")
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--method", default="frossl", choices=list_objectives(),
                        help="self-supervised objective; baselines use their solo-learn lr and wd "
                             "unless --base-lr/--weight-decay are given")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many steps (the schedule still spans --epochs)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop after this many wall-clock minutes, evaluations included "
                             "(the schedule still spans --epochs); for equal-budget comparisons")
    parser.add_argument("--ckpt-every-min", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers (ImageFolder sets)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where decoded-image caches go (default: the datasets folder of "
                             "$FROSSL_HUB_CACHE, else ~/.cache/frossl_hub)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-probe", action="store_true", help="skip the linear probe")
    parser.add_argument("--no-publish", action="store_true", help="skip publishing")
    parser.add_argument("--publish-dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--init-from", default=None, metavar="NAME_OR_PATH",
                        help="start the backbone from a published model: catalog name, folder or "
                             "hf-hub:ORG/NAME (checked like frossl_hub.load; the projector starts fresh)")
    _add_folder_options(parser)
    _add_recipe_options(parser)
    return parser


def _add_folder_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--dataset folder: your own images")
    group.add_argument("--image-size", type=int, default=None, metavar="N",
                       help="side the images are decoded and trained at (default: the median short "
                            f"side of the images, at most {MAX_AUTO_SIZE})")
    group.add_argument("--val-fraction", type=float, default=None, metavar="F",
                       help="hold out this fraction of each class, seeded, when there is no DIR/val "
                            f"(default: {DEFAULT_VAL_FRACTION:g} of a labelled folder; 0 keeps every "
                            "image for training and skips the probe)")
    group.add_argument("--labels", default="auto", choices=LABEL_MODES,
                       help="class folders: detect them (auto), require them, or ignore them (none)")
    group.add_argument("--strict", action="store_true",
                       help="refuse unreadable images instead of skipping them")
    group.add_argument("--stream", action="store_true",
                       help="stream through DataLoader workers even when the images fit in memory")


def _folder_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> FolderOptions:
    given = [flag for flag, value in (("--image-size", args.image_size),
                                      ("--val-fraction", args.val_fraction is not None),
                                      ("--labels", args.labels != "auto"), ("--strict", args.strict),
                                      ("--stream", args.stream)) if value]
    if args.dataset != FOLDER:
        if given:
            parser.error(f"{', '.join(given)} only apply to --dataset folder")
        return FolderOptions()
    if args.crop_size is not None:
        parser.error("--dataset folder trains at --image-size; --crop-size does not apply")
    if args.image_size is not None and args.image_size < 1:
        parser.error(f"--image-size must be a positive number of pixels, got {args.image_size}")
    return FolderOptions(labels=args.labels, val_fraction=args.val_fraction,
                         image_size=args.image_size, strict=args.strict, stream=args.stream)


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The data set's recipe with the method's defaults and the command line's overrides.

    Raises:
        RecipeError: a setting out of range (the message names its flag).
    """
    changes: Dict[str, Any] = {}
    for name in setting_types():
        value = getattr(args, name, None)
        if name not in _HIDDEN_FIELDS and value is not None:
            changes[name] = tuple(value) if isinstance(value, list) else value
    return get_recipe(args.dataset, method=args.method).replace(**changes)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .checkpoint import CheckpointError
    from .data import DatasetError
    from .init_from import InitError
    from .trainer import RunOptions, TrainingError, train

    parser = build_parser()
    args = parser.parse_args(argv)
    folder = _folder_options(args, parser)
    try:
        recipe = recipe_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    opts = RunOptions(out=args.out, data_dir=args.data_dir, device=args.device,
                      precision=args.precision, compile=args.compile, resume=args.resume,
                      max_steps=args.max_steps, max_minutes=args.max_minutes, ckpt_every_min=args.ckpt_every_min,
                      workers=args.workers, threads=args.threads, cache_dir=args.cache_dir,
                      progress=not args.no_progress, init_from=args.init_from, folder=folder)
    try:
        train(recipe, opts)
        if dist_env().is_main and not args.no_probe:
            from .linear import load_run, run_linear_probe, why_no_probe

            if why_no_probe(load_run(args.out)[1]) is None:
                run_linear_probe(args.out, device=args.device, data_dir=args.data_dir,
                                 cache_dir=args.cache_dir)
            if not args.no_publish:
                from .publish import publish_run

                folder = publish_run(args.out, dtype=args.publish_dtype, overwrite=True)
                print(f"published {folder}")
    except (DatasetError, TrainingError, CheckpointError, InitError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 130
    return 0
