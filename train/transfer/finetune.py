"""``--mode finetune``: the whole backbone and a new head, with the usual transfer recipe.

timm's factories build the optimizer (SGD with momentum; two parameter groups, the backbone
at ``backbone_lr_scale`` times the head's learning rate) and the schedule (linear warm-up,
then cosine, stepped every update). Training views are random resized crops and flips of
the decoded images (``train.augment``). Each (k, draw) run checkpoints every epoch into
``OUT.partial/`` (``train.checkpoint``: atomic, weights-only); ``resume`` continues there.
"""
from __future__ import annotations

import copy
import json
import shutil
import sys
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from frossl_hub._io import atomic_write_json
from frossl_hub.embed_folder import ImageFiles, collate_list
from frossl_hub.inference import BatchTransform

from ..augment import ViewConfig, augment_view
from ..checkpoint import load_checkpoint, save_checkpoint
from ..data.user_folder import Sample
from ..evaluation import topk_accuracy
from .data import TransferData, check_readable, check_shots
from .parent import Parent
from .shots import run_shots

__all__ = ["WORK_SUFFIX", "work_dir", "decode_split", "finetune"]

WORK_SUFFIX = ".partial"  # OUT.partial/: checkpoints of an unfinished finetune
RESULTS_NAME = "results.json"  # the finished (k, draw) runs of OUT.partial/
WEIGHT_DECAY = 1e-4
MOMENTUM = 0.9
WARMUP_LR_FRACTION = 0.01  # warm-up starts at this fraction of the head's learning rate
CROP_SCALE = (0.35, 1.0)  # random resized crop of the decoded image


def work_dir(out: Path) -> Path:
    """Where an unfinished finetune keeps its checkpoints: OUT.partial/ beside OUT."""
    return out.with_name(out.name + WORK_SUFFIX)


def decode_split(samples: Sequence[Sample], model: torch.nn.Module, workers: int
                 ) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """(uint8 images at the model's input, labels, unreadable files) of a split, decoded by
    the embed path's dataset (``frossl_hub.embed_folder.ImageFiles``)."""
    transform = BatchTransform(model)
    files = [Path(path) for path, _ in samples]
    loader = torch.utils.data.DataLoader(ImageFiles(files, transform.to_uint8), batch_size=256,
                                         num_workers=workers if len(files) > 256 else 0,
                                         collate_fn=collate_list)
    images, labels, missing = [], [], []
    for batch in loader:
        for i, tensor, _ in batch:
            if tensor is None:
                missing.append(str(files[i]))
            else:
                images.append(tensor)
                labels.append(samples[i][1])
    if not images:
        return torch.empty(0, *model.pretrained_cfg["input_size"], dtype=torch.uint8), torch.empty(0, dtype=torch.int64), missing
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64), missing


def _optimizer_and_schedule(model: torch.nn.Module, opts: Any, steps_per_epoch: int) -> Tuple[Any, Any]:
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    head = list(model.get_classifier().parameters())
    ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": backbone, "lr": opts.lr * opts.backbone_lr_scale}, {"params": head, "lr": opts.lr}]
    optimizer = create_optimizer_v2(groups, opt="sgd", lr=opts.lr, weight_decay=WEIGHT_DECAY,
                                    momentum=MOMENTUM)
    schedule, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=opts.epochs,
                                      warmup_epochs=min(opts.warmup_epochs, max(0, opts.epochs - 1)),
                                      warmup_lr=opts.lr * WARMUP_LR_FRACTION, min_lr=0.0,
                                      step_on_epochs=False, updates_per_epoch=steps_per_epoch)
    return optimizer, schedule


@torch.no_grad()
def _evaluate(model: torch.nn.Module, transform: BatchTransform, images: torch.Tensor,
              labels: torch.Tensor, device: torch.device) -> Dict[int, Optional[float]]:
    if not len(labels):
        return {1: None, 5: None}
    model.eval()
    logits = torch.cat([model(transform.normalize(images[i:i + 256]).to(device)).float().cpu()
                        for i in range(0, len(images), 256)])
    return topk_accuracy(logits, labels, ks=(1, 5))


def _train_run(parent: Parent, classes: int, images: torch.Tensor, labels: torch.Tensor, opts: Any,
               ckpt: Path, device: torch.device, seed: int) -> Tuple[torch.nn.Module, bool]:
    """One fine-tuning run on (images, labels), resumed from ``ckpt`` when it is there;
    whether it ran its whole schedule (not stopped at ``max_steps``)."""
    torch.manual_seed(seed)
    model = copy.deepcopy(parent.model)
    model.reset_classifier(classes)
    model.to(device)
    batch = min(opts.batch_size, len(images))
    steps_per_epoch = max(1, len(images) // batch)  # full batches: batch norm never sees one image
    optimizer, schedule = _optimizer_and_schedule(model, opts, steps_per_epoch)
    aug_gen = torch.Generator(device=device).manual_seed(seed)
    step = 0
    if ckpt.is_file():
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        aug_gen.set_state(state["rng"].to(aug_gen.get_state().device))
        step = int(state["step"])
    cfg = ViewConfig(size=images.shape[-1], scale=CROP_SCALE, jitter_prob=0.0, gray_prob=0.0,
                     flip_prob=0.5, interpolation="bicubic")
    mean, std = parent.model.pretrained_cfg["mean"], parent.model.pretrained_cfg["std"]
    data, targets = images.to(device), labels.to(device)
    total = opts.epochs * steps_per_epoch
    stop = min(total, opts.max_steps) if opts.max_steps else total  # the schedule still spans --epochs
    while step < stop:
        epoch = step // steps_per_epoch
        perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        model.train()
        for b in range(step % steps_per_epoch, min(steps_per_epoch, step % steps_per_epoch + stop - step)):
            idx = perm[b * batch:(b + 1) * batch].to(device)
            x = augment_view(data[idx], cfg, mean, std, generator=aug_gen, channels_last=False)
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                loss = F.cross_entropy(model(x).float(), targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            schedule.step_update(num_updates=step)
        save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                         "epoch": step / steps_per_epoch, "rng": aug_gen.get_state()}, ckpt)
    return model, step >= total


def finetune(opts: Any, shots: Sequence[Optional[int]], parent: Parent, data: TransferData,
             device: torch.device) -> Tuple[List[Dict[str, Any]], Dict[str, Any], Dict[str, torch.Tensor],
                                            Dict[str, int]]:
    """Fine-tune for every (k, draw) of ``shots``; (rows, published run, its weights, image
    counts). The published run says ``stopped_at_max_steps`` when a run was cut short."""
    transform = BatchTransform(parent.model)
    train_x, train_y, missing = decode_split(data.train, parent.model, opts.workers)
    val_x, val_y, missing_val = decode_split(data.val, parent.model, opts.workers)
    check_readable(data, train_y)
    check_shots(shots, data, train_y)
    work = work_dir(Path(opts.out))
    if work.exists() and not opts.resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / RESULTS_NAME
    done: Dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    stopped: List[str] = []  # runs cut short by max_steps: their checkpoints are kept

    def fit(index: torch.Tensor, tag: str) -> Dict[str, Any]:
        ckpt = work / f"{tag}.ckpt"
        if tag in done:
            return dict(done[tag], head=ckpt)
        model, finished = _train_run(parent, len(data.classes), train_x[index], train_y[index], opts,
                                     ckpt, device, opts.seed * 1_000_003 + zlib.crc32(tag.encode()))
        acc = _evaluate(model, transform, val_x, val_y, device)
        run = {"top1": acc[1], "top5": acc[5], "train_images": len(index)}
        if finished:
            done[tag] = run
            atomic_write_json(results_path, done)
        else:
            stopped.append(tag)
        return dict(run, head=ckpt)

    rows, published = run_shots(train_y, shots, opts.seed, fit)
    state = {k: v.cpu() for k, v in load_checkpoint(published.pop("head"))["model"].items()}
    if opts.dtype != "float32" and len(val_y):  # the numbers of the weights as stored
        from frossl_hub.hub import DTYPES

        model = copy.deepcopy(parent.model)
        model.reset_classifier(len(data.classes))
        model.load_state_dict({k: v.to(DTYPES[opts.dtype]).to(v.dtype) for k, v in state.items()})
        acc = _evaluate(model.to(device), transform, val_x, val_y, device)
        published.update(top1=acc[1], top5=acc[5])
    counts = {"train": len(train_y), "val": len(val_y), "unreadable": len(missing) + len(missing_val)}
    if stopped:
        published["stopped_at_max_steps"] = True
        print(f"finetune: {len(stopped)} run(s) stopped at --max-steps {opts.max_steps}; their "
              f"checkpoints are in {work}: rerun with --resume to continue", file=sys.stderr)
    return rows, published, state, counts
