"""Pretraining throughput: the trainer's data pipeline against its ceiling and the usual one.

Measures, in one process run and on one model, source images per second (each source
image makes V augmented views; V = 2 in every recipe) of:

1. ceiling: the trainer's model step alone on a batch already in memory and already
   augmented (same shapes): backbone + projector + online classifier, FroSSL loss, LARS
   step; CPU fp32, GPU bf16 autocast, channels_last, as the trainer runs. With
   ``--compile`` also under ``torch.compile`` (minutes of compilation on a CPU).
2. trainer: the real step of ``train/trainer.py``: resident uint8 data indexed by
   ``epoch_batches`` + ``augment_views`` batched augmentation + the same model step. Built
   from the trainer's own public pieces (``build_training``, ``set_learning_rate``,
   ``optimization_step``, ``Recipe.views``, ``epoch_batches``). This is the number users get.
3. the usual pipeline: a torchvision per-image ``DataLoader`` (``transforms.v2``,
   RandomResizedCrop, ColorJitter p=0.8, RandomGrayscale, GaussianBlur, RandomSolarize,
   RandomHorizontalFlip, Normalize, with the recipe's per-view settings; V views per item)
   with ``num_workers`` = all available cores, feeding the same model step.

Two diagnostic rows show what bounds 2 and 3: ``augment_views`` alone and the DataLoader
alone (no model). Ratios printed with their goals:

- 2 / 1 >= 0.9 on CPU, >= 0.85 on GPU (the pipeline costs at most 10-15 % of a step);
- 2 / 3 >= 1.5 on 2 CPU cores, >= 3 on a GPU at 32 px.

Data: fashion-mnist reads the real 60k training images (``train.data.load_arrays``) and
cifar10 the real 50k (``--data-dir``, default ``.data/cifar-10-jpeg``) when present, else
synthetic uint8 of the same shape (said in the output). stl10-shaped (96 px, STL-10
recipe) and imagenet-shaped (224 px, ImageNet recipe) use a synthetic resident uint8 pool
(``--pool``, default 4 batches). For imagenet-shaped this is the in-memory path
(RandomResizedCrop on the device from 224 px sources); the trainer streams real ImageNet
through ``ImageFolderCrops`` workers (JPEG decode + crop on the CPU, colour ops on the
device), which this does not measure. Both pipelines start from the same resident uint8
arrays: no JPEG decoding in either.

``--epoch-table`` instead measures the trainer step (2) for both ResNet18 stems on
Fashion-MNIST (60k) and CIFAR-10 (50k) and prints seconds per epoch (evaluation excluded),
to plan a budget.

Examples::

    python benchmarks/train_throughput.py --dataset cifar10 --device cpu
    python benchmarks/train_throughput.py --dataset cifar10 --device cuda --compile
    python benchmarks/train_throughput.py --epoch-table --device cpu
    python benchmarks/train_throughput.py --dataset fashion-mnist --steps 2 --warmup 1 --batch-size 4 \
        --arch frossl_resnet18 --workers 1 --threads 1  # smoke
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

try:  # `python benchmarks/NAME.py` puts this folder on sys.path; `python -m benchmarks.NAME` does not
    import _common
except ImportError:
    from benchmarks import _common
import torch
from torch import Tensor

from frossl_hub.runtime import DeviceError, resolve_device
from frossl_hub.specs import DatasetSpec, get_dataset_spec
from frossl_hub.stems import SMALL_STEM_ARCH, STANDARD_STEM_ARCH
from train import data as data_mod
from train.augment import ViewConfig, augment_views, blur_kernel_size
from train.batches import TrainData, epoch_batches
from train.model import amp_dtype_for, build_training, optimization_step, set_learning_rate
from train.recipes import Recipe, get_recipe

DEFAULT_CIFAR_DIR = _common.REPO / ".data" / "cifar-10-jpeg"
# benchmark name -> (recipe, synthetic pool size: None = the real data set's size)
DATASETS: Dict[str, Tuple[str, Optional[int]]] = {
    "fashion-mnist": ("fashion-mnist", 60_000),
    "cifar10": ("cifar10", 50_000),
    "stl10-shaped": ("stl10", None),
    "imagenet-shaped": ("imagenet", None),
}
EPOCH_TABLE = (("fashion-mnist", 60_000), ("cifar10", 50_000))


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class Source:
    """Resident uint8 images (N, C, H, W) and int64 labels, and where they came from."""

    images: Tensor
    labels: Tensor
    note: str


def synthetic(n: int, spec: DatasetSpec, size: int, seed: int = 0) -> Tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, spec.in_chans, size, size), dtype=torch.uint8, generator=gen)
    return images, torch.randint(0, spec.num_classes, (n,), generator=gen)


def load_source(name: str, recipe: Recipe, data_dir: Optional[Path], pool: int) -> Source:
    """The real training split when it is here (fashion-mnist, cifar10), else synthetic."""
    spec = get_dataset_spec(recipe.dataset)
    real_size = DATASETS[name][1]
    if name in ("fashion-mnist", "cifar10"):
        folder = data_dir if name == "cifar10" else None
        if name == "cifar10" and folder is None and DEFAULT_CIFAR_DIR.is_dir():
            folder = DEFAULT_CIFAR_DIR
        try:
            if name == "cifar10" and folder is None:
                raise data_mod.DatasetError("no --data-dir and no .data/cifar-10-jpeg")
            ds = data_mod.load_arrays(recipe.dataset, folder, "pretrain")
            where = folder or data_mod.default_data_dir(recipe.dataset)
            return Source(ds.images, ds.labels, f"real {spec.title} training split ({len(ds)} images, {where})")
        except (data_mod.DatasetError, OSError) as exc:
            images, labels = synthetic(real_size, spec, spec.image_size)
            return Source(images, labels, f"SYNTHETIC uint8 {tuple(images.shape)} (real data not found: {exc})")
    size = 224 if name == "imagenet-shaped" else spec.image_size
    images, labels = synthetic(pool, spec, size)
    return Source(images, labels, f"SYNTHETIC uint8 resident pool {tuple(images.shape)} "
                                  f"({name}: the shape of {spec.title}'s training crops)")


# ---------------------------------------------------------------------------------------------
# the trainer's step


class TrainerStep:
    """One optimisation step exactly as ``train.trainer.train_one_epoch`` runs it.

    The trainer's own ``build_training``, ``set_learning_rate`` and ``optimization_step``,
    with the same on-device log sums, so the benchmark measures the code users run.
    """

    def __init__(self, recipe: Recipe, spec: DatasetSpec, device: torch.device, compile_model: bool,
                 total_steps: int = 10_000) -> None:
        torch.manual_seed(recipe.seed)
        self.recipe = recipe
        # bf16 autocast on CUDA, fp32 on CPU; channels_last, as the trainer runs
        self.training = build_training(recipe, spec.in_chans, spec.num_classes, device,
                                       amp_dtype_for("auto", device), compile_model=compile_model)
        self.total_steps, self.warmup_steps, self.step = total_steps, total_steps // 100, 0
        self.log_sums: Dict[str, Tensor] = {}
        self.training.model.train()

    def __call__(self, views: List[Tensor], labels: Tensor) -> None:
        set_learning_rate(self.training.optimizer, self.step, self.total_steps, self.warmup_steps)
        logged = optimization_step(self.training, views, labels)
        self.step += 1
        for key, value in logged.items():
            self.log_sums[key] = self.log_sums.get(key, 0) + value
        if self.step % self.recipe.log_every_steps == 0:  # the trainer reads the sums on the host here
            float(self.log_sums["loss"])
            self.log_sums = {}


def trainer_batches(source: Source, recipe: Recipe, device: torch.device) -> Iterator[Tuple[Tensor, Tensor]]:
    """The trainer's (uint8 images, labels) batches, epoch after epoch, from device-resident data."""
    ds = data_mod.ArrayDataset(source.images.to(device), source.labels.to(device))
    data = TrainData(pretrain=ds, bank=ds, test=ds, classes=[], in_memory=True,
                     spec=get_dataset_spec(recipe.dataset))
    steps_per_epoch = len(ds) // recipe.batch_size
    epoch = 0
    while True:
        yield from epoch_batches(data, recipe, epoch, 0, steps_per_epoch, recipe.batch_size, 0, 0, device)
        epoch += 1


# ---------------------------------------------------------------------------------------------
# the usual pipeline: torchvision, per image, in DataLoader workers


def torchvision_view(cfg: ViewConfig, mean: Sequence[float], std: Sequence[float]) -> Callable[[Any], Tensor]:
    """transforms.v2 with the same augmentations and settings as one ``ViewConfig``."""
    from torchvision.transforms import v2

    ops: List[Any] = [v2.RandomResizedCrop(cfg.size, scale=cfg.scale, ratio=cfg.ratio)]
    if cfg.jitter_prob > 0:
        ops.append(v2.RandomApply([v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)],
                                  p=cfg.jitter_prob))
    if cfg.gray_prob > 0:
        ops.append(v2.RandomGrayscale(p=cfg.gray_prob))
    if cfg.blur_prob > 0:
        kernel = cfg.blur_kernel or blur_kernel_size(cfg.size)
        ops.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=cfg.blur_sigma)], p=cfg.blur_prob))
    if cfg.solarize_prob > 0:
        ops.append(v2.RandomSolarize(threshold=128, p=cfg.solarize_prob))
    if cfg.flip_prob > 0:
        ops.append(v2.RandomHorizontalFlip(p=cfg.flip_prob))
    ops += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


class PerImageViews(torch.utils.data.Dataset):
    """(V, C, S, S) views and the label of one image, as torchvision data sets feed them."""

    def __init__(self, images: Tensor, labels: Tensor, views: Sequence[Callable[[Any], Tensor]],
                 pil: bool) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, C) uint8
        self.labels = labels.numpy()
        self.views, self.pil = list(views), pil

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tuple[Tensor, int]:
        array = self.images[i]
        if self.pil:
            from PIL import Image

            image: Any = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
        else:
            from torchvision import tv_tensors

            image = tv_tensors.Image(torch.from_numpy(array).permute(2, 0, 1))
        return torch.stack([view(image) for view in self.views]), int(self.labels[i])


def usual_loader(source: Source, cfgs: Sequence[ViewConfig], spec: DatasetSpec, batch_size: int,
                 workers: int, pil: bool, device: torch.device) -> torch.utils.data.DataLoader:
    views = [torchvision_view(cfg, spec.mean, spec.std) for cfg in cfgs]
    dataset = PerImageViews(source.images, source.labels, views, pil)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                       num_workers=workers, persistent_workers=workers > 0,
                                       pin_memory=device.type == "cuda")


def forever(loader: torch.utils.data.DataLoader) -> Iterator[Tuple[Tensor, Tensor]]:
    while True:
        yield from loader


# ---------------------------------------------------------------------------------------------
# measurements


@dataclass
class Row:
    name: str
    seconds_per_step: Optional[float]
    batch_size: int

    @property
    def images_per_s(self) -> Optional[float]:
        return None if not self.seconds_per_step else self.batch_size / self.seconds_per_step


def measure(name: str, fn: Callable[[], None], args: argparse.Namespace, device: torch.device,
            batch_size: int, extra_warmup: int = 0) -> Row:
    print(f"  measuring: {name} ...", file=sys.stderr, flush=True)
    return Row(name, _common.timed(fn, args.steps, args.warmup + extra_warmup, device), batch_size)


def setup(name: str, args: argparse.Namespace, arch: Optional[str] = None) -> Tuple[Recipe, DatasetSpec, Source]:
    recipe_name, _ = DATASETS[name]
    recipe = get_recipe(recipe_name)
    batch = args.batch_size or recipe.batch_size
    recipe = recipe.replace(batch_size=batch, arch=arch or args.arch or recipe.arch)
    if name == "imagenet-shaped":
        recipe = recipe.replace(crop_size=224)
    pool = args.pool or 4 * batch
    return recipe, get_dataset_spec(recipe.dataset), load_source(name, recipe, args.data_dir, pool)


def compare(args: argparse.Namespace, device: torch.device) -> None:
    """Rows 1-3 (and the diagnostics) for one data set, then the ratios."""
    recipe, spec, source = setup(args.dataset, args)
    batch = recipe.batch_size
    if len(source.images) < batch:
        raise SystemExit(f"error: {len(source.images)} images, fewer than one batch of {batch}")
    cfgs = recipe.views()
    workers = args.workers if args.workers is not None else _common.available_cores()
    print(f"data: {source.note}")
    print(f"recipe: {recipe.dataset}, {recipe.architecture}, batch {batch} source images, "
          f"{len(cfgs)} views of {recipe.crop_size} px, precision "
          f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}, channels_last, steps {args.steps} "
          f"(+{args.warmup} warm-up)")
    print(f"usual pipeline: torchvision.transforms.v2 on {'PIL images' if args.baseline_input == 'pil' else 'uint8 tensors'}, "
          f"DataLoader num_workers={workers}")
    print()

    step = TrainerStep(recipe, spec, device, compile_model=False)
    aug_gen = torch.Generator(device=device).manual_seed(recipe.seed * 7919)
    batches = trainer_batches(source, recipe, device)
    first_images, first_labels = next(batches)
    ready_views = augment_views(first_images, cfgs, spec.mean, spec.std, generator=aug_gen, channels_last=True)

    def ceiling(module_step: TrainerStep) -> Callable[[], None]:
        return lambda: module_step(ready_views, first_labels)

    def trainer(module_step: TrainerStep) -> Callable[[], None]:
        def run() -> None:
            images, labels = next(batches)
            views = augment_views(images, cfgs, spec.mean, spec.std, generator=aug_gen, channels_last=True)
            module_step(views, labels)
        return run

    def augment_only() -> None:
        images, _ = next(batches)
        augment_views(images, cfgs, spec.mean, spec.std, generator=aug_gen, channels_last=True)

    rows = [measure("1  ceiling: pre-augmented batch, model step", ceiling(step), args, device, batch),
            measure("2  trainer: resident uint8 + augment_views + step", trainer(step), args, device, batch)]
    if args.compile:
        compiled = TrainerStep(recipe, spec, device, compile_model=True)
        rows += [measure("1c ceiling, torch.compile", ceiling(compiled), args, device, batch, extra_warmup=2),
                 measure("2c trainer, torch.compile", trainer(compiled), args, device, batch, extra_warmup=2)]
    loader = usual_loader(source, cfgs, spec, batch, workers, args.baseline_input == "pil", device)
    stream = forever(loader)
    prefetched = workers * (loader.prefetch_factor or 0)  # drain what workers queued during warm-up

    def usual() -> None:
        x, y = next(stream)
        views = [x[:, v].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                 for v in range(x.shape[1])]
        step(views, y.to(device, non_blocking=True))

    def loader_only() -> None:
        next(stream)

    rows.append(measure(f"3  usual: torchvision DataLoader ({workers} workers) + step", usual, args,
                        device, batch, extra_warmup=prefetched))
    rows.append(measure("   diagnostic: augment_views alone", augment_only, args, device, batch))
    rows.append(measure(f"   diagnostic: DataLoader alone ({workers} workers)", loader_only, args, device,
                        batch, extra_warmup=prefetched))
    print_rows(rows)
    print_ratios(rows, device, recipe.crop_size)


def print_rows(rows: Sequence[Row]) -> None:
    print(_common.table(["pipeline", "ms/step", "source img/s"],
                        [(r.name, f"{1000 * r.seconds_per_step:.1f}", f"{r.images_per_s:.1f}") for r in rows]))
    print()


def ratio(rows: Sequence[Row], a: str, b: str) -> Optional[float]:
    by = {r.name.split()[0]: r.images_per_s for r in rows if r.name.split()[0][0].isdigit()}
    return by[a] / by[b] if by.get(a) and by.get(b) else None


def print_ratios(rows: Sequence[Row], device: torch.device, crop: int) -> None:
    gpu = device.type == "cuda"
    goal_ceiling = 0.85 if gpu else 0.9
    goal_usual = 3.0 if gpu else 1.5
    where = ("on a GPU at 32 px" if gpu else "on 2 CPU cores")
    context = []
    if not gpu and _common.available_cores() != 2:
        context.append(f"this machine has {_common.available_cores()} cores")
    if gpu and crop != 32:
        context.append(f"this run is at {crop} px")
    note = f"; the goal is stated {where}, {', '.join(context)}" if context else ""
    r21 = ratio(rows, "2", "1")
    print(_common.fmt_ratio("trainer / ceiling (2/1)", r21, f">= {goal_ceiling}", r21 is not None and r21 >= goal_ceiling))
    r21c = ratio(rows, "2c", "1c")
    if r21c is not None:
        print(_common.fmt_ratio("trainer / ceiling, torch.compile (2c/1c)", r21c, f">= {goal_ceiling}",
                                r21c >= goal_ceiling))
    r23 = ratio(rows, "2", "3")
    print(_common.fmt_ratio("trainer / usual torchvision DataLoader (2/3)", r23, f">= {goal_usual} {where}",
                            r23 is not None and r23 >= goal_usual) + note)


def trainer_row(name: str, arch: str, args: argparse.Namespace, device: torch.device) -> Tuple[Row, Recipe, Source]:
    """Row 2 (the trainer's step) alone, for one data set and backbone."""
    recipe, spec, source = setup(name, args, arch=arch)
    cfgs = recipe.views()
    step = TrainerStep(recipe, spec, device, compile_model=args.compile)
    aug_gen = torch.Generator(device=device).manual_seed(recipe.seed * 7919)
    batches = trainer_batches(source, recipe, device)

    def run() -> None:
        images, labels = next(batches)
        step(augment_views(images, cfgs, spec.mean, spec.std, generator=aug_gen, channels_last=True), labels)

    row = measure(f"{arch} {name}", run, args, device, recipe.batch_size, extra_warmup=2 if args.compile else 0)
    return row, recipe, source


def epoch_table(args: argparse.Namespace, device: torch.device) -> None:
    """Seconds per epoch of the trainer (row 2) for both stems on Fashion-MNIST and CIFAR-10."""
    print(f"trainer step (resident uint8 + augment_views + model step), "
          f"{'torch.compile' if args.compile else 'eager'}, "
          f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}, steps {args.steps} (+{args.warmup} warm-up); "
          "an epoch = (images // batch) steps, evaluation excluded")
    print()
    results = []
    for arch in (SMALL_STEM_ARCH, STANDARD_STEM_ARCH):
        for name, n_images in EPOCH_TABLE:
            row, recipe, source = trainer_row(name, arch, args, device)
            ips = row.images_per_s or float("nan")
            seconds = (n_images // recipe.batch_size) * recipe.batch_size / ips
            data = "real" if source.note.startswith("real") else "synthetic"
            title = get_dataset_spec(recipe.dataset).title
            results.append((arch, f"{title} ({n_images // 1000}k, {data})", recipe.batch_size,
                            f"{ips:.1f}", f"{seconds:.0f}", f"{seconds / 60:.1f}"))
    print(_common.table(["architecture", "data set", "batch", "img/s", "s/epoch", "min/epoch"], results))


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Pretraining images/s: trainer pipeline vs its ceiling vs a torchvision DataLoader.",
        epilog="Prints source images/s (each makes V views) and the ratios with their goals.")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="cifar10")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--arch", default=None, choices=[SMALL_STEM_ARCH, STANDARD_STEM_ARCH],
                        help="backbone (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, default=None, help="source images per step (default: the recipe's)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each row")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (minutes on CPU)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"CIFAR-10 folder (default {DEFAULT_CIFAR_DIR} when present)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers of the usual pipeline "
                        "(default: all available cores)")
    parser.add_argument("--baseline-input", choices=["pil", "tensor"], default="pil",
                        help="what the usual pipeline's transforms get (torchvision data sets give PIL)")
    parser.add_argument("--pool", type=int, default=None,
                        help="synthetic resident images for stl10-/imagenet-shaped (default 4 batches)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    parser.add_argument("--epoch-table", action="store_true",
                        help="instead: seconds per epoch of the trainer, both stems, Fashion-MNIST and CIFAR-10")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("error: --steps must be >= 1 and --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    title = "trainer epoch table" if args.epoch_table else f"train throughput: {args.dataset}"
    _common.print_header(title, [Path(sys.executable).name] + sys.argv, device)
    started = time.perf_counter()
    if args.epoch_table:
        epoch_table(args, device)
    else:
        compare(args, device)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
