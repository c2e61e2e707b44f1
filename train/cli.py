"""`python -m train`: pretrain → linear probe → publish, with every recipe field overridable."""
from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from frossl_hub.objectives import list_objectives
from frossl_hub.runtime import dist_env
from frossl_hub.specs import DATASET_SPECS

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
                        choices=sorted(DATASET_SPECS), help="data set (its recipe is the default)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding the data set in its official layout "
                             "(Fashion-MNIST default: /usr/share/datasets/fashion-mnist)")
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
                        help="where decoded-image caches go when the data folder is read-only")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-probe", action="store_true", help="skip the linear probe")
    parser.add_argument("--no-publish", action="store_true", help="skip publishing")
    parser.add_argument("--publish-dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    _add_recipe_options(parser)
    return parser


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
    from .trainer import RunOptions, TrainingError, train

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        recipe = recipe_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    opts = RunOptions(out=args.out, data_dir=args.data_dir, device=args.device,
                      precision=args.precision, compile=args.compile, resume=args.resume,
                      max_steps=args.max_steps, max_minutes=args.max_minutes, ckpt_every_min=args.ckpt_every_min,
                      workers=args.workers, threads=args.threads, cache_dir=args.cache_dir,
                      progress=not args.no_progress)
    try:
        train(recipe, opts)
        if dist_env().is_main and not args.no_probe:
            from .linear import run_linear_probe

            run_linear_probe(args.out, device=args.device, data_dir=args.data_dir,
                             cache_dir=args.cache_dir)
            if not args.no_publish:
                from .publish import publish_run

                folder = publish_run(args.out, dtype=args.publish_dtype, overwrite=True)
                print(f"published {folder}")
    except (DatasetError, TrainingError, CheckpointError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 130
    return 0
