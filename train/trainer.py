"""The pretraining loop: resident data, batched augmentation, LARS, checkpoints, DDP."""
from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from frossl_hub._io import atomic_write_json
from frossl_hub.loss import FroSSLLoss
from frossl_hub.models import Projector, create_backbone
from frossl_hub.objectives import get_objective
from frossl_hub.specs import get_dataset_spec

from . import data as data_mod
from .augment import augment_view, augment_views
from .checkpoint import CKPT_NAME, load_checkpoint, save_checkpoint
from .evaluation import effective_rank, eigenspectrum, extract_features, knn_top1
from .optim import LARS, param_groups, warmup_cosine
from .recipes import Recipe, view_configs

__all__ = ["RunOptions", "SSLModel", "train", "describe_hardware", "optimization_step", "TrainingError", "CONFIG_NAME", "METRICS_NAME"]

CONFIG_NAME = "config.json"  # resolved recipe + options of a run
METRICS_NAME = "metrics.jsonl"  # one JSON object per line: step logs, evals, spectra


class TrainingError(RuntimeError):
    """A run cannot start or continue; the message says why and what to do."""


@dataclass
class RunOptions:
    """How and where a recipe runs (nothing here changes what is learned)."""

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
    extra: Dict[str, Any] = field(default_factory=dict)


class SSLModel(nn.Module):
    """Backbone + projector + online classifier; each view is a separate forward pass."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.classifier = classifier

    def forward(self, views: List[Tensor]) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        feats, projs, logits = [], [], []
        for view in views:  # per-view BN statistics, as the official code
            f = self.backbone(view)
            feats.append(f)
            projs.append(self.projector(f))
            logits.append(self.classifier(f.detach()))
        return feats, projs, logits


# ---------------------------------------------------------------------------------------------
# set-up helpers


def _dist_info() -> Tuple[int, int, int]:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def _resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"--device {name} asked for, but CUDA is not available here; "
                                "use --device cpu.")
        if name == "cuda":
            name = f"cuda:{local_rank}"
        torch.cuda.set_device(torch.device(name))
    elif name != "cpu":
        raise TrainingError(f"unknown --device {name!r}: use auto, cpu, cuda or cuda:N.")
    return torch.device(name)


def _amp_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    table = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in table:
        raise TrainingError(f"unknown --precision {precision!r}: use auto, fp32, bf16 or fp16.")
    return table[precision]


def describe_hardware(device: torch.device, world: int = 1) -> str:
    """One line naming the processor(s) a run used, for cards and benchmark records."""
    if device.type == "cuda":
        return f"{world} x {torch.cuda.get_device_name(device)}"
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads" + (f", {world} processes" if world > 1 else "")


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: the GPU's allocator peak, else this process's peak resident set."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """Deterministic shuffle of an epoch: depends only on (seed, epoch), so resume is exact."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def _build_model(recipe: Recipe, in_chans: int, num_classes: int) -> Tuple[SSLModel, nn.Module]:
    objective = get_objective(recipe.method)
    backbone = create_backbone(recipe.architecture, in_chans=in_chans, num_classes=0)
    dims = tuple(recipe.projector_dims or objective.projector_dims)
    projector = Projector(backbone.num_features, dims)
    classifier = nn.Linear(backbone.num_features, num_classes)
    if recipe.method == "frossl":
        loss_fn: nn.Module = FroSSLLoss(recipe.invariance_weight, check_finite=False)
    else:
        loss_fn = objective.make_loss()
    return SSLModel(backbone, projector, classifier), loss_fn


class _MetricsLog:
    """Append-only JSON-lines log, flushed per line; rank 0 only."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after ``step`` (they belong to work lost in a crash)."""
        if not (self.enabled and self.path.is_file()):
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        text = "".join(line + "\n" for line in kept)
        from frossl_hub._io import atomic_write

        atomic_write(self.path, lambda p: p.write_text(text))

    def write(self, record: Dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class _Data:
    pretrain: Any  # ArrayDataset (in memory) or ImageFolderCrops
    bank: Any  # labelled train split for kNN / probe (ArrayDataset or dataset)
    test: Any
    classes: List[str]
    in_memory: bool


def _load_data(recipe: Recipe, opts: RunOptions, device: torch.device) -> _Data:
    name = get_dataset_spec(recipe.dataset).name
    data_dir = opts.data_dir or data_mod.default_data_dir(name)
    if data_dir is None:
        raise TrainingError(f"--data-dir is required for {name}: point it at the folder holding "
                            "the data set in its official layout.")
    if data_mod.is_in_memory(name):
        pretrain = data_mod.load_arrays(name, data_dir, "pretrain", opts.cache_dir)
        bank = data_mod.load_arrays(name, data_dir, "train", opts.cache_dir) if name == "stl10" else pretrain
        test = data_mod.load_arrays(name, data_dir, "test", opts.cache_dir)
        for ds in {id(pretrain): pretrain, id(bank): bank, id(test): test}.values():
            ds.images = ds.images.to(device)
            ds.labels = ds.labels.to(device)
        return _Data(pretrain, bank, test, list(test.classes), True)
    pretrain = data_mod.ImageFolderCrops(name, data_dir, "train", num_views=recipe.num_views,
                                         image_size=recipe.crop_size, scale=tuple(recipe.crop_scale))
    bank = data_mod.ImageFolderCrops(name, data_dir, "train", image_size=recipe.crop_size, eval_mode=True)
    test = data_mod.ImageFolderCrops(name, data_dir, "test", image_size=recipe.crop_size, eval_mode=True)
    return _Data(pretrain, bank, test, list(pretrain.classes), False)


def _subset(n: int, limit: Optional[int], seed: int) -> Tensor:
    if limit is None or limit >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values


def _eval_arrays(ds: Any, limit: Optional[int], seed: int, in_memory: bool, workers: int) -> Iterator[Tuple[Tensor, Tensor]]:
    """Yield (uint8 images, labels) batches of a (sub)set for feature extraction."""
    idx = _subset(len(ds), limit, seed)
    if in_memory:
        dev_idx = idx.to(ds.images.device)
        for start in range(0, len(dev_idx), 1024):
            sel = dev_idx[start:start + 1024]
            yield ds.images[sel], ds.labels[sel]
        return
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx.tolist()), batch_size=256,
                                         num_workers=workers, pin_memory=torch.cuda.is_available())
    for images, labels in loader:
        yield images[:, 0], labels  # eval mode returns one (1, C, S, S) view per image


# ---------------------------------------------------------------------------------------------
# the loop


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


def train(recipe: Recipe, opts: RunOptions) -> Dict[str, Any]:
    """Run (or resume) FroSSL pretraining; returns the final evaluation record."""
    rank, world, local_rank = _dist_info()
    device = _resolve_device(opts.device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if recipe.batch_size % world:
        raise TrainingError(f"--batch-size {recipe.batch_size} must be divisible by the "
                            f"number of processes ({world}).")
    local_batch = recipe.batch_size // world
    amp_dtype = _amp_dtype(opts.precision, device)
    spec = get_dataset_spec(recipe.dataset)
    run_dir = Path(opts.out)
    is_main = rank == 0
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)

    ckpt_path = run_dir / CKPT_NAME
    state: Optional[Dict[str, Any]] = None
    if opts.resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        saved = state.get("recipe", {})
        if saved.get("dataset") != recipe.dataset or saved.get("method") != recipe.method:
            raise TrainingError(f"{ckpt_path} is a {saved.get('method')} run on {saved.get('dataset')}, "
                                f"not {recipe.method} on {recipe.dataset}; use another --out.")
    elif not opts.resume and ckpt_path.is_file():
        raise TrainingError(f"{run_dir} already holds a run ({CKPT_NAME}); pass --resume to continue "
                            "it, or choose another --out.")

    data = _load_data(recipe, opts, device)
    n_train = len(data.pretrain)
    steps_per_epoch = n_train // recipe.batch_size
    if steps_per_epoch < 1:
        raise TrainingError(f"{recipe.dataset} has {n_train} pretraining images, fewer than one batch "
                            f"of {recipe.batch_size}; lower --batch-size.")
    total_steps = max(1, int(round(recipe.epochs * steps_per_epoch)))
    warmup_steps = min(int(round(recipe.warmup_epochs * steps_per_epoch)), total_steps // 2)
    stop_at = min(total_steps, opts.max_steps) if opts.max_steps else total_steps
    eval_interval = max(1, int(round(recipe.eval_every_epochs * steps_per_epoch)))
    spectrum_interval = max(1, int(round(recipe.spectrum_every_epochs * steps_per_epoch)))

    torch.manual_seed(recipe.seed + rank)
    model, loss_fn = _build_model(recipe, spec.in_chans, len(data.classes))
    if world > 1 and device.type == "cuda":  # SyncBN is CUDA-only; CPU DDP keeps per-rank BN
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if opts.channels_last:
        model.to(memory_format=torch.channels_last)
    groups = param_groups({"backbone": model.backbone, "projector": model.projector},
                          recipe.weight_decay, recipe.lr(), model.classifier, recipe.classifier_lr)
    optimizer = LARS(groups, lr=recipe.lr(), momentum=recipe.momentum,
                     weight_decay=recipe.weight_decay, eta=recipe.lars_eta)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    aug_gen = torch.Generator(device=device).manual_seed(recipe.seed * 7919 + rank)

    step, elapsed_train, wall_before = 0, 0.0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        aug_gen.set_state(state["rng"]["aug"][rank].cpu() if rank < len(state["rng"]["aug"]) else aug_gen.get_state())
        torch.set_rng_state(state["rng"]["torch"])
        step, elapsed_train = int(state["step"]), float(state["train_time_s"])
        wall_before = float(state.get("wall_time_s", elapsed_train))
    session_start = time.monotonic()

    def wall() -> float:
        """Seconds of this run so far, evaluations included, across resumed sessions."""
        return round(wall_before + time.monotonic() - session_start, 2)
    metrics = _MetricsLog(run_dir / METRICS_NAME, is_main)
    if state is not None:
        metrics.truncate_after(step)
    if is_main:
        atomic_write_json(run_dir / CONFIG_NAME, {
            "recipe": recipe.to_dict(),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
            "world_size": world, "device": str(device), "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps, "classes": data.classes, "num_pretrain_images": n_train,
            "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
            "hardware": describe_hardware(device, world),
        })

    train_module: nn.Module = model
    if world > 1:
        train_module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if opts.compile:
        train_module = torch.compile(train_module)
    views_cfg = view_configs(recipe, crop=data.in_memory)

    def save(reason: str) -> None:
        """Every rank calls this (the RNG states are gathered); rank 0 writes."""
        aug_states = [aug_gen.get_state()]
        if world > 1:
            gathered: List[Any] = [None] * world
            dist.all_gather_object(gathered, aug_gen.get_state())
            aug_states = gathered
        if not is_main:
            return
        save_checkpoint({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(), "step": step, "epoch": step / steps_per_epoch,
            "train_time_s": elapsed_train, "wall_time_s": wall(), "recipe": recipe.to_dict(),
            "reason": reason,
            "rng": {"aug": aug_states, "torch": torch.get_rng_state()},
        }, ckpt_path)

    def evaluate(with_spectrum: bool) -> Dict[str, Any]:
        model.eval()
        feats_bank, labels_bank = _features(model, data.bank, recipe, spec, amp_dtype, data.in_memory,
                                            opts.workers, recipe.knn_train_limit, None)
        feats_test, labels_test, projs_test = _features(model, data.test, recipe, spec, amp_dtype,
                                                        data.in_memory, opts.workers,
                                                        recipe.eval_test_limit, model.projector)
        with torch.no_grad():
            online = (model.classifier(feats_test).argmax(1) == labels_test).float().mean()
        record: Dict[str, Any] = {
            "kind": "eval", "step": step, "epoch": step / steps_per_epoch,
            "train_time_s": round(elapsed_train, 2), "wall_time_s": wall(),
            "online_top1": float(online),
            "knn_top1": knn_top1(feats_bank, labels_bank, feats_test, labels_test,
                                 len(data.classes), recipe.knn_k, recipe.knn_temperature),
        }
        record["peak_memory_mb"] = peak_memory_mb(device)
        spectra = {"backbone": eigenspectrum(feats_test), "projector": eigenspectrum(projs_test)}
        record["effective_rank_backbone"] = effective_rank(spectra["backbone"])
        record["effective_rank_projector"] = effective_rank(spectra["projector"])
        if with_spectrum:
            metrics.write({"kind": "spectrum", "step": step, "epoch": step / steps_per_epoch,
                           **{k: [round(float(x), 8) for x in v] for k, v in spectra.items()}})
        model.train()
        return record

    from tqdm.auto import tqdm

    last_ckpt_time = time.monotonic()
    log_sums: Dict[str, Tensor] = {}
    log_count, log_t0, log_step0 = 0, time.monotonic(), step
    final: Dict[str, Any] = {}
    bar = tqdm(total=stop_at, initial=step, disable=None if (opts.progress and is_main) else True, unit="step",
               dynamic_ncols=True)
    model.train()
    with _StopFlag() as stop:
        while step < stop_at:
            epoch = step // steps_per_epoch
            batches = _epoch_batches(data, recipe, epoch, step % steps_per_epoch, steps_per_epoch,
                                     local_batch, rank, opts.workers, device)
            for images, labels in batches:
                t_step = time.monotonic()
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * warmup_cosine(step, total_steps, warmup_steps)
                if data.in_memory:
                    views = augment_views(images, views_cfg, spec.mean, spec.std, generator=aug_gen,
                                          channels_last=opts.channels_last)
                else:  # workers cropped each view; colour, blur, flip happen here on the device
                    views = [augment_view(images[:, v], cfg, spec.mean, spec.std, generator=aug_gen,
                                          channels_last=opts.channels_last)
                             for v, cfg in enumerate(views_cfg)]
                logged = optimization_step(train_module, loss_fn, optimizer, scaler, views, labels,
                                           recipe.method == "frossl", amp_dtype, device)
                step += 1
                bar.update(1)
                elapsed_train += time.monotonic() - t_step
                if opts.max_minutes is not None:  # a fixed wall-clock budget: stop here
                    over = wall() >= opts.max_minutes * 60
                    if world > 1:  # ranks agree at log steps
                        flag = torch.tensor([float(over and step % recipe.log_every_steps == 0)], device=device)
                        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                        over = bool(flag[0])
                    if over:
                        stop_at = step
                for key, value in logged.items():
                    log_sums[key] = log_sums.get(key, 0) + value
                log_count += 1

                if step % recipe.log_every_steps == 0 or step == stop_at:
                    values = {k: float(v) / log_count for k, v in log_sums.items()}
                    if not math.isfinite(values["loss"]):
                        raise TrainingError(f"the loss became {values['loss']} at step {step}; lower "
                                            "--base-lr or check the data. The last checkpoint is intact.")
                    now = time.monotonic()
                    ips = (step - log_step0) * recipe.batch_size / max(1e-9, now - log_t0)
                    record = {"kind": "train", "step": step, "epoch": round(step / steps_per_epoch, 4),
                              "lr": optimizer.param_groups[0]["lr"], "images_per_s": round(ips, 1),
                              "train_time_s": round(elapsed_train, 2), "wall_time_s": wall(),
                              **{k: round(v, 6) for k, v in values.items()}}
                    metrics.write(record)
                    bar.set_postfix(loss=f"{values['loss']:.3f}", img_s=f"{ips:.0f}")
                    log_sums, log_count, log_t0, log_step0 = {}, 0, time.monotonic(), step

                if (step % eval_interval == 0 or step == stop_at) and is_main:
                    final = evaluate(with_spectrum=step % spectrum_interval == 0 or step == stop_at)
                    metrics.write(final)
                    bar.write(f"step {step} epoch {step / steps_per_epoch:.2f}: online top-1 "
                              f"{final['online_top1']:.4f}, kNN top-1 {final['knn_top1']:.4f}")
                    # evaluation time is not training throughput: restart the window
                    log_sums, log_count, log_t0, log_step0 = {}, 0, time.monotonic(), step
                if world > 1 and (step % eval_interval == 0 or step == stop_at):
                    dist.barrier()

                end_of_epoch = step % steps_per_epoch == 0
                overdue = (time.monotonic() - last_ckpt_time) / 60 >= opts.ckpt_every_min
                stopping = stop.signum is not None
                if world > 1:  # every rank must take the same decision: agree at log steps only
                    if step % recipe.log_every_steps == 0 or end_of_epoch or step == stop_at:
                        flags = torch.tensor([float(overdue), float(stopping)], device=device)
                        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                        overdue, stopping = bool(flags[0]), bool(flags[1])
                    else:
                        overdue = stopping = False
                if end_of_epoch or overdue or step == stop_at or stopping:
                    save("signal" if stopping else "periodic")
                    last_ckpt_time = time.monotonic()
                if stopping:
                    bar.close()
                    raise KeyboardInterrupt(f"stopped by signal {stop.signum or 'on another rank'} at step {step}; "
                                            f"checkpoint saved, continue with --resume")
                if step >= stop_at or end_of_epoch:
                    break
    bar.close()
    if world > 1:
        dist.barrier()
    return final


def optimization_step(train_module: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                      scaler: torch.amp.GradScaler, views: List[Tensor], labels: Tensor,
                      with_parts: bool, amp_dtype: Optional[torch.dtype],
                      device: torch.device) -> Dict[str, Tensor]:
    """One training step (forward per view, SSL loss + online probe, backward, optimiser).

    Returns detached on-device scalars to log; nothing here reads a value on the host.
    The learning rate is set by the caller.
    """
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        _, projs, logits = train_module(views)
    ssl_loss, parts = loss_fn(projs, return_parts=True) if with_parts else (loss_fn(projs), {})
    # online probe on labelled images only (STL-10's unlabeled split has label -1);
    # a sum over a clamped count stays finite when a batch has no labels at all
    labelled = (labels >= 0).sum().clamp_min(1)
    ce = sum(F.cross_entropy(lg.float(), labels, ignore_index=-1, reduction="sum")
             for lg in logits) / (labelled * len(logits))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(ssl_loss + ce).backward()
    scaler.step(optimizer)
    scaler.update()
    return {"loss": ssl_loss.detach().float(), "online_ce": ce.detach().float(),
            **{k: v.mean().float() for k, v in parts.items()}}


def _features(model: SSLModel, ds: Any, recipe: Recipe, spec: Any, amp_dtype: Optional[torch.dtype],
              in_memory: bool, workers: int, limit: Optional[int], projector: Optional[nn.Module]):
    feats, projs, labels = [], [], []
    for images, lab in _eval_arrays(ds, limit, recipe.seed, in_memory, workers):
        f, p = extract_features(model.backbone, images, spec.mean, spec.std, recipe.crop_size,
                                projector=projector, amp_dtype=amp_dtype)
        feats.append(f)
        labels.append(lab.to(f.device))
        if p is not None:
            projs.append(p)
    out = (torch.cat(feats), torch.cat(labels))
    return out + (torch.cat(projs),) if projector is not None else out


def _epoch_batches(data: _Data, recipe: Recipe, epoch: int, start_batch: int, steps_per_epoch: int,
                   local_batch: int, rank: int, workers: int, device: torch.device) -> Iterator[Tuple[Tensor, Tensor]]:
    """This process's (uint8 images, labels) batches of an epoch, from ``start_batch`` on."""
    perm = epoch_permutation(len(data.pretrain), recipe.seed, epoch)
    perm = perm[: steps_per_epoch * recipe.batch_size].view(steps_per_epoch, recipe.batch_size)
    perm = perm[start_batch:, rank * local_batch:(rank + 1) * local_batch]
    if data.in_memory:
        perm = perm.to(data.pretrain.images.device)
        for idx in perm:
            yield data.pretrain.images[idx], data.pretrain.labels[idx]
        return
    loader = torch.utils.data.DataLoader(
        data.pretrain, batch_sampler=perm.tolist(), num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
        prefetch_factor=4 if workers else None)
    for views, labels in loader:
        # workers return (B, V, C, S, S) crops; colour/blur/flip happen on the device
        yield views.to(device, non_blocking=True), labels.to(device, non_blocking=True)
