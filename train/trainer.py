"""The pretraining loop: resident data, batched augmentation, LARS, checkpoints, DDP.

Read in the order it runs, as timm's ``train.py``: :func:`train` sets a run up
(:func:`_setup`: processes, device, resume check, data, model), then alternates
:func:`train_one_epoch` and :func:`evaluate`; a :class:`~train.checkpoint.Checkpointer`
owns saving and restoring, :func:`_agree` makes the ranks take the same decisions.
"""
from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from frossl_hub._io import atomic_write_json
from frossl_hub.runtime import DeviceError, DistEnv, dist_env, resolve_device
from frossl_hub.specs import FOLDER, DatasetSpec
from frossl_hub.stems import STANDARD_STEM_ARCH, STEMS

from .augment import augment_view, augment_views
from .batches import TrainData, epoch_batches, load_train_data
from .checkpoint import CKPT_NAME, Checkpointer, Progress, load_checkpoint
from .data import FolderOptions
from .evaluation import effective_rank, eigenspectrum, knn_top1, split_features
from .hardware import describe_hardware, peak_memory_mb
from .init_from import Parent, load_parent, parent_architecture, resolve_parent
from .model import Training, amp_dtype_for, build_training, optimization_step, set_learning_rate
from .metrics_log import METRICS_NAME, MetricsLog
from .recipes import Recipe

__all__ = ["RunOptions", "train", "train_one_epoch", "evaluate", "TrainingError", "CONFIG_NAME",
           "METRICS_NAME"]

CONFIG_NAME = "config.json"  # resolved recipe + options of a run


class TrainingError(RuntimeError):
    """A run cannot start or continue; the message says why and what to do."""


@dataclass
class RunOptions:
    """How and where a recipe runs, what it starts from and how a folder of images is read."""

    out: Path
    data_dir: Optional[Path] = None
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False
    resume: bool = False
    max_steps: Optional[int] = None  # stop early (the schedule still spans all epochs)
    max_minutes: Optional[float] = None  # stop after this much wall-clock (evaluations included)
    ckpt_every_min: float = 10.0
    workers: int = 8  # DataLoader workers for ImageFolder data sets
    threads: Optional[int] = None  # torch CPU threads (default: all cores)
    channels_last: bool = True
    progress: bool = True
    cache_dir: Optional[Path] = None
    init_from: Optional[str] = None  # a published model the backbone starts from
    folder: FolderOptions = field(default_factory=FolderOptions)  # --dataset folder only
    extra: Dict[str, Any] = field(default_factory=dict)


class _StopFlag:
    """Turns SIGTERM/SIGINT into a request to checkpoint and stop at the next step."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class _Schedule:
    """Step counts of a run, from its data size and recipe."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    stop_at: int  # may move earlier: --max-minutes
    eval_interval: int
    spectrum_interval: int

    @classmethod
    def of(cls, recipe: Recipe, n_train: int, max_steps: Optional[int]) -> "_Schedule":
        per_epoch = n_train // recipe.batch_size
        if per_epoch < 1:
            raise TrainingError(f"{recipe.dataset} has {n_train} pretraining images, fewer than one "
                                f"batch of {recipe.batch_size}; lower --batch-size.")
        total = max(1, int(round(recipe.epochs * per_epoch)))
        return cls(per_epoch, total, min(int(round(recipe.warmup_epochs * per_epoch)), total // 2),
                   min(total, max_steps) if max_steps else total,
                   max(1, int(round(recipe.eval_every_epochs * per_epoch))),
                   max(1, int(round(recipe.spectrum_every_epochs * per_epoch))))


@dataclass
class _Run:
    """A set-up run: what every part of the loop reads, and its progress."""

    recipe: Recipe
    opts: RunOptions
    env: DistEnv
    spec: DatasetSpec
    data: TrainData
    training: Training
    schedule: _Schedule
    checkpointer: Checkpointer
    metrics: MetricsLog
    progress: Progress
    aug_gen: torch.Generator
    session_start: float = field(default_factory=time.monotonic)
    last_ckpt: float = field(default_factory=time.monotonic)  # when the last save happened
    window: "_LogWindow" = field(default_factory=lambda: _LogWindow())
    final: Dict[str, Any] = field(default_factory=dict)  # the last evaluation record

    @property
    def step(self) -> int:
        return self.progress.step

    def epoch(self) -> float:
        return self.step / self.schedule.steps_per_epoch

    def wall(self) -> float:
        """Seconds of this run so far, evaluations included, across resumed sessions."""
        return round(self.progress.wall_before_s + time.monotonic() - self.session_start, 2)

    def save(self, reason: str) -> None:
        self.checkpointer.save(reason, self.step, self.epoch(), self.progress.train_time_s, self.wall())


# ---------------------------------------------------------------------------------------------
# set-up


def _init_processes(opts: RunOptions, recipe: Recipe) -> Tuple[DistEnv, torch.device]:
    """This process's rank, its device (CUDA set current), torch threads, the process group."""
    env = dist_env()
    try:
        device = resolve_device(opts.device, env.local_rank)
    except DeviceError as exc:
        raise TrainingError(str(exc)) from None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if env.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if recipe.batch_size % env.world:
        raise TrainingError(f"--batch-size {recipe.batch_size} must be divisible by the "
                            f"number of processes ({env.world}).")
    return env, device


def _resume_state(run_dir: Path, recipe: Recipe, resume: bool) -> Optional[Dict[str, Any]]:
    """The checkpoint to continue from (None: a fresh run); refuses to overwrite a run."""
    ckpt_path = run_dir / CKPT_NAME
    if not ckpt_path.is_file():
        return None
    if not resume:
        raise TrainingError(f"{run_dir} already holds a run ({CKPT_NAME}); pass --resume to continue "
                            "it, or choose another --out.")
    state = load_checkpoint(ckpt_path)
    saved = state.get("recipe", {})
    if saved.get("dataset") != recipe.dataset or saved.get("method") != recipe.method:
        raise TrainingError(f"{ckpt_path} is a {saved.get('method')} run on {saved.get('dataset')}, "
                            f"not {recipe.method} on {recipe.dataset}; use another --out.")
    return state


def _option(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def _resolve_recipe(recipe: Recipe, data: TrainData, opts: RunOptions, state: Optional[Dict[str, Any]]
                    ) -> Tuple[Recipe, Optional[Parent], Optional[Dict[str, Any]]]:
    """The recipe as the data and the parent model fix it: a folder's image size, the parent's
    architecture; the parent to load (fresh runs) and its record (kept across resumes)."""
    if recipe.dataset == FOLDER:
        recipe = recipe.replace(crop_size=data.spec.image_size)
    parent, lineage = None, (state or {}).get("init_from")
    if opts.init_from and state is None:
        parent = resolve_parent(opts.init_from)
        recipe = recipe.replace(arch=parent_architecture(parent, recipe.arch))
        lineage = parent.record()
    elif lineage and recipe.arch is None:
        recipe = recipe.replace(arch=lineage["architecture"])
    saved = (state or {}).get("recipe", {}).get("architecture")
    if saved and saved != recipe.architecture:
        raise TrainingError(f"the run in {opts.out} trains {saved}, not {recipe.architecture}; resume it "
                            f"with --arch {saved}.")
    return recipe, parent, lineage


def _write_config(run: _Run) -> None:
    world, device = run.env.world, run.training.device
    config = {
        "recipe": run.recipe.to_dict(),
        "options": {k: _option(v) for k, v in vars(run.opts).items()},
        "world_size": world, "device": str(device), "steps_per_epoch": run.schedule.steps_per_epoch,
        "total_steps": run.schedule.total_steps, "classes": run.data.classes,
        "num_pretrain_images": len(run.data.pretrain),
        "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
        "hardware": describe_hardware(device, world),
    }
    if run.recipe.dataset == FOLDER:  # the spec is measured from the data: linear/publish read it
        config.update(dataset_spec=dataclasses.asdict(run.spec), data=run.data.facts)
    if run.checkpointer.extra.get("init_from"):
        config["init_from"] = run.checkpointer.extra["init_from"]
    atomic_write_json(Path(run.opts.out) / CONFIG_NAME, config)


def _cpu_stem_hint(recipe: Recipe, device: torch.device, warm_start: bool) -> Optional[str]:
    """Advice for a CPU run whose stem downsamples less than timm's (the paper's stem for
    28-32 px data): it costs several times the compute per image, and the equal-minutes stem
    study on a CPU found the standard stem ahead. None where it does not apply (a GPU, the
    standard stem, or a warm start, which must keep its parent's stem)."""
    arch = recipe.architecture
    if device.type != "cpu" or warm_start or STEMS[arch].reduction >= STEMS[STANDARD_STEM_ARCH].reduction:
        return None
    return (f"{arch} ({STEMS[arch].description}) keeps more resolution than timm's stem and "
            "trained 3-10x fewer images/s on a 2-core CPU; in 30-minute CPU runs on CIFAR-10 "
            f"--arch {STANDARD_STEM_ARCH} reached the best accuracy "
            "(benchmarks/convergence/cifar10/stems/READING.md). The paper's stem is for GPUs.")


def _setup(recipe: Recipe, opts: RunOptions) -> _Run:
    """Processes, device, resume check, data, model, optimiser and restored state."""
    env, device = _init_processes(opts, recipe)
    try:
        amp_dtype = amp_dtype_for(opts.precision, device)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    run_dir = Path(opts.out)
    state = _resume_state(run_dir, recipe, opts.resume)
    data = load_train_data(recipe, opts.data_dir, opts.cache_dir, device, opts.folder,
                           opts.progress and env.is_main)
    recipe, parent, lineage = _resolve_recipe(recipe, data, opts, state)
    schedule = _Schedule.of(recipe, len(data.pretrain), opts.max_steps)
    if env.is_main:  # only now: bad data or a bad parent leave no run folder behind
        run_dir.mkdir(parents=True, exist_ok=True)
        for note in data.notes:
            print(f"{recipe.dataset}: {note}", file=sys.stderr)
        hint = None if state is not None else _cpu_stem_hint(recipe, device, parent is not None)
        if hint:
            print(f"note: {hint}", file=sys.stderr)
    torch.manual_seed(recipe.seed + env.rank)
    training = build_training(recipe, data.spec.in_chans, max(1, len(data.classes)), device,
                              amp_dtype, env.world, opts.channels_last, opts.compile)
    if parent is not None:
        load_parent(training.model.backbone, parent)
    aug_gen = torch.Generator(device=device).manual_seed(recipe.seed * 7919 + env.rank)
    checkpointer = Checkpointer(run_dir / CKPT_NAME, training, aug_gen, recipe.to_dict(),
                                env.rank, env.world, {"init_from": lineage} if lineage else {})
    progress = checkpointer.restore(state) if state is not None else Progress()
    metrics = MetricsLog(run_dir / METRICS_NAME, env.is_main)
    if state is not None:
        metrics.truncate_after(progress.step)
    run = _Run(recipe, opts, env, data.spec, data, training, schedule, checkpointer, metrics,
               progress, aug_gen)
    run.window.step0 = progress.step
    if env.is_main:
        _write_config(run)
    return run


# ---------------------------------------------------------------------------------------------
# the loop


def _agree(run: _Run, flags: Sequence[bool]) -> List[bool]:
    """Flags every rank agrees on: true on all when true on any (a MAX all-reduce)."""
    if run.env.world == 1:
        return list(flags)
    tensor = torch.tensor([float(f) for f in flags], device=run.training.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(x) for x in tensor]


def evaluate(run: _Run, with_spectrum: bool) -> Dict[str, Any]:
    """Online probe and kNN top-1 on the test (sub)set, effective ranks; spectra logged."""
    recipe, spec, model, data = run.recipe, run.spec, run.training.model, run.data
    model.eval()
    common = dict(mean=spec.mean, std=spec.std, size=recipe.crop_size, seed=recipe.seed,
                  amp_dtype=run.training.amp_dtype, workers=run.opts.workers)
    if data.evaluable:
        feats_bank, labels_bank, _ = split_features(model.backbone, data.bank,
                                                    limit=recipe.knn_train_limit, **common)
    feats_test, labels_test, projs_test = split_features(  # no labels: spectra of train images
        model.backbone, data.test if data.evaluable else data.bank, limit=recipe.eval_test_limit,
        projector=model.projector, **common)
    record: Dict[str, Any] = {
        "kind": "eval", "step": run.step, "epoch": run.epoch(),
        "train_time_s": round(run.progress.train_time_s, 2), "wall_time_s": run.wall(),
    }
    if data.evaluable:
        with torch.no_grad():
            online = (model.classifier(feats_test).argmax(1) == labels_test).float().mean()
        record["online_top1"] = float(online)
        record["knn_top1"] = knn_top1(feats_bank, labels_bank, feats_test, labels_test,
                                      len(data.classes), recipe.knn_k, recipe.knn_temperature)
    record["peak_memory_mb"] = peak_memory_mb(run.training.device)
    spectra = {"backbone": eigenspectrum(feats_test), "projector": eigenspectrum(projs_test)}
    record["effective_rank_backbone"] = effective_rank(spectra["backbone"])
    record["effective_rank_projector"] = effective_rank(spectra["projector"])
    if with_spectrum:
        run.metrics.write({"kind": "spectrum", "step": run.step, "epoch": run.epoch(),
                           **{k: [round(float(x), 8) for x in v] for k, v in spectra.items()}})
    model.train()
    return record


@dataclass
class _LogWindow:
    """On-device sums of the logged values since the last train record."""

    sums: Dict[str, Tensor] = field(default_factory=dict)
    count: int = 0
    t0: float = field(default_factory=time.monotonic)
    step0: int = 0

    def add(self, logged: Dict[str, Tensor]) -> None:
        for key, value in logged.items():
            self.sums[key] = self.sums.get(key, 0) + value
        self.count += 1


def _train_record(run: _Run, window: _LogWindow) -> Dict[str, Any]:
    """The train record of the window (reads the sums on the host); a non-finite loss stops."""
    values = {k: float(v) / window.count for k, v in window.sums.items()}
    if not math.isfinite(values["loss"]):
        raise TrainingError(f"the loss became {values['loss']} at step {run.step}; lower "
                            "--base-lr or check the data. The last checkpoint is intact.")
    ips = (run.step - window.step0) * run.recipe.batch_size / max(1e-9, time.monotonic() - window.t0)
    return {"kind": "train", "step": run.step, "epoch": round(run.epoch(), 4),
            "lr": run.training.optimizer.param_groups[0]["lr"], "images_per_s": round(ips, 1),
            "train_time_s": round(run.progress.train_time_s, 2), "wall_time_s": run.wall(),
            **{k: round(v, 6) for k, v in values.items()}}


def _views(run: _Run, images: Tensor, views_cfg: list) -> List[Tensor]:
    mean, std, gen, last = run.spec.mean, run.spec.std, run.aug_gen, run.opts.channels_last
    if run.data.in_memory:
        return augment_views(images, views_cfg, mean, std, generator=gen, channels_last=last)
    # workers cropped each view; colour, blur, flip happen here on the device
    return [augment_view(images[:, v], cfg, mean, std, generator=gen, channels_last=last)
            for v, cfg in enumerate(views_cfg)]


def _log_and_evaluate(run: _Run, bar: Any) -> None:
    """Log, evaluate and wait for the other ranks where this step calls for it."""
    step, schedule, recipe = run.step, run.schedule, run.recipe
    if step % recipe.log_every_steps == 0 or step == schedule.stop_at:
        record = _train_record(run, run.window)
        run.metrics.write(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", img_s=f"{record['images_per_s']:.0f}")
        run.window = _LogWindow(step0=step)
    evaluating = step % schedule.eval_interval == 0 or step == schedule.stop_at
    if evaluating and run.env.is_main:
        run.final = evaluate(run, with_spectrum=step % schedule.spectrum_interval == 0
                             or step == schedule.stop_at)
        run.metrics.write(run.final)
        bar.write(f"step {step} epoch {run.epoch():.2f}: " + (
            f"online top-1 {run.final['online_top1']:.4f}, kNN top-1 {run.final['knn_top1']:.4f}"
            if "knn_top1" in run.final else
            f"effective rank {run.final['effective_rank_backbone']:.1f} (backbone)"))
        run.window = _LogWindow(step0=step)  # evaluation time is not training throughput
    if run.env.world > 1 and evaluating:
        dist.barrier()


def train_one_epoch(run: _Run, epoch: int, stop: _StopFlag, bar: Any) -> bool:
    """Steps of ``epoch`` from the current one to its end or the run's stop; True when a
    signal asked to stop (after the checkpoint is saved)."""
    recipe, schedule, training, progress = run.recipe, run.schedule, run.training, run.progress
    views_cfg = recipe.views(crop=run.data.in_memory)
    batches = epoch_batches(run.data, recipe, epoch, run.step % schedule.steps_per_epoch,
                            schedule.steps_per_epoch, recipe.batch_size // run.env.world,
                            run.env.rank, run.opts.workers, training.device)
    for images, labels in batches:
        t_step = time.monotonic()
        set_learning_rate(training.optimizer, run.step, schedule.total_steps, schedule.warmup_steps)
        run.window.add(optimization_step(training, _views(run, images, views_cfg), labels))
        progress.step += 1
        bar.update(1)
        progress.train_time_s += time.monotonic() - t_step
        at_log = run.step % recipe.log_every_steps == 0  # multi-rank decisions are taken here
        if run.opts.max_minutes is not None:  # a fixed wall-clock budget: stop here
            over = run.wall() >= run.opts.max_minutes * 60
            if _agree(run, [over and (run.env.world == 1 or at_log)])[0]:
                schedule.stop_at = run.step
        _log_and_evaluate(run, bar)
        end_of_epoch = run.step % schedule.steps_per_epoch == 0
        sync = run.env.world == 1 or at_log or end_of_epoch or run.step == schedule.stop_at
        overdue = (time.monotonic() - run.last_ckpt) / 60 >= run.opts.ckpt_every_min
        overdue, stopping = _agree(run, [overdue and sync, stop.signum is not None and sync])
        if end_of_epoch or overdue or run.step == schedule.stop_at or stopping:
            run.save("signal" if stopping else "periodic")
            run.last_ckpt = time.monotonic()
        if stopping:
            return True
        if run.step >= schedule.stop_at or end_of_epoch:
            break
    return False


def train(recipe: Recipe, opts: RunOptions) -> Dict[str, Any]:
    """Run (or resume) self-supervised pretraining; returns the final evaluation record."""
    from tqdm.auto import tqdm

    run = _setup(recipe, opts)
    bar = tqdm(total=run.schedule.stop_at, initial=run.step, unit="step", dynamic_ncols=True,
               disable=None if (opts.progress and run.env.is_main) else True)
    run.last_ckpt = time.monotonic()
    run.training.model.train()
    with _StopFlag() as stop:
        while run.step < run.schedule.stop_at:
            if train_one_epoch(run, run.step // run.schedule.steps_per_epoch, stop, bar):
                bar.close()
                raise KeyboardInterrupt(f"stopped by signal {stop.signum or 'on another rank'} at step "
                                        f"{run.step}; checkpoint saved, continue with --resume")
    bar.close()
    if run.env.world > 1:
        dist.barrier()
    return run.final
