"""Your own images (``--dataset folder``): any folder of image files, with or without labels.

Layouts, read as torchvision's ImageFolder would where there are labels:

- ``DIR/<class>/...``: two or more class folders, no loose images at the top: labelled (the
  labels only evaluate the run; pretraining never sees them);
- ``DIR/...`` (flat, or any tree that is not class folders): unlabelled;
- ``DIR/train/...`` + ``DIR/val/...``: a held-out split (or ``val_fraction``: a seeded,
  per-class random fraction of the files). Class folders with neither hold out
  ``DEFAULT_VAL_FRACTION`` (10%) of each class by default; ``val_fraction=0`` keeps them all.

Every image mode is converted to RGB (greyscale, palette, alpha over white, 16-bit scaled),
then resized on its short side to ``size`` and center-cropped. Unreadable or truncated
files are left out and counted (``strict``: refused); an image over PIL's
decompression-bomb limit is always refused by name. Every error is a ``DatasetError``
naming the file or folder.
"""
from __future__ import annotations

import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from PIL import Image, ImageOps

from frossl_hub.embed_folder import IMAGE_SUFFIXES  # one list: what embed, index and train read

from .base import ArrayDataset, DatasetError

__all__ = ["FOLDER", "IMAGE_SUFFIXES", "DEFAULT_VAL_FRACTION", "held_out_note", "FolderScan", "scan_folder",
           "class_dirs", "images_under", "median_short_side",
           "read_image", "decode_folder", "channel_stats", "LABEL_MODES"]

FOLDER = "folder"  # the data-set name of your own images
LABEL_MODES = ("auto", "folders", "none")  # class folders: detect, require, ignore
DEFAULT_VAL_FRACTION = 0.1  # held out per class of a labelled folder without DIR/val
MAX_AUTO_SIZE = 224  # the default image size is the data's median short side, at most this
SIZE_SAMPLE = 1000  # files whose header gives the median short side
STATS_SAMPLE = 2000  # decoded images the mean/std are measured on
_SKIP_DIRS = {".frossl_cache", "__pycache__"}  # .frossl_cache: where older versions cached

Sample = Tuple[str, int]  # path, label (-1: unlabelled)


def _error(path: Path, problem: str) -> DatasetError:
    return DatasetError(f"{FOLDER}: {problem}: {path}")


@dataclass
class FolderScan:
    """The image files of a folder run, split into train and held-out, with their labels."""

    root: Path
    classes: List[str]  # [] when unlabelled
    train: List[Sample]
    val: List[Sample] = field(default_factory=list)
    held_out: str = ""  # how the val split was made, for the card ("" when none)

    @property
    def labelled(self) -> bool:
        return bool(self.classes)


def images_under(folder: Path) -> List[str]:
    """Image files below ``folder``, recursively, sorted; hidden files and caches skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        found += [os.path.join(dirpath, f) for f in sorted(filenames)
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return found


def class_dirs(root: Path) -> List[Path]:
    """The class folders directly under ``root``: visible, not a cache, sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name not in _SKIP_DIRS)


def _scan_root(root: Path, labels: str, classes: Optional[List[str]] = None) -> Tuple[List[str], List[Sample]]:
    """(classes, samples) of one folder: class folders when they are there (or required)."""
    if not root.is_dir():
        raise _error(root, "data folder does not exist")
    loose = [f for f in os.listdir(root) if Path(f).suffix.lower() in IMAGE_SUFFIXES
             and not f.startswith(".")]
    per_class = {d.name: images_under(d) for d in class_dirs(root)} if labels != "none" else {}
    per_class = {name: files for name, files in per_class.items() if files}
    use_folders = labels == "folders" or (labels == "auto" and not loose and len(per_class) >= 2)
    if labels == "folders" and (loose or len(per_class) < 2):
        raise _error(root, f"--labels folders needs two or more class folders of images and no loose "
                           f"images; found {len(per_class)} class folder(s) and {len(loose)} loose image(s)")
    if not use_folders:
        return [], [(path, -1) for path in images_under(root)]
    names = classes if classes is not None else sorted(per_class)
    unknown = sorted(set(per_class) - set(names))
    if unknown:
        raise _error(root, f"class folder(s) {unknown[:5]} are not among the train classes")
    index = {name: i for i, name in enumerate(names)}
    return names, [(path, index[name]) for name in sorted(per_class) for path in per_class[name]]


def _split_off(samples: List[Sample], fraction: float, seed: int) -> Tuple[List[Sample], List[Sample]]:
    """A seeded ``fraction`` of each label's files held out (at least one where there are two)."""
    train, val = [], []
    for label in sorted({lab for _, lab in samples}):
        group = [s for s in samples if s[1] == label]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + label + 1)
        order = torch.randperm(len(group), generator=gen).tolist()
        n_val = min(len(group) - 1, max(1 if len(group) > 1 else 0, round(fraction * len(group))))
        held = set(order[:n_val])
        val += [s for i, s in enumerate(group) if i in held]
        train += [s for i, s in enumerate(group) if i not in held]
    return train, val


def held_out_note(fraction: float, seed: int, default: bool) -> str:
    """How a seeded per-class split was made, for the run's output and its card."""
    how = (f"{100 * fraction:g}% of each class, held out by default (seed {seed}; "
           "--val-fraction 0 keeps every image for training)" if default
           else f"a seeded {fraction:g} of each class (--val-fraction, seed {seed})")
    return how


def scan_folder(root: Path, labels: str = "auto", val_fraction: Optional[float] = None,
                seed: int = 0) -> FolderScan:
    """The files of a folder run and its splits; see the module docstring for the layouts.

    ``val_fraction`` None: ``DIR/val`` when there is one, else ``DEFAULT_VAL_FRACTION`` of
    each class of a labelled folder (none of an unlabelled one); 0: no held-out split.

    Raises:
        DatasetError: a missing or empty folder, fewer than 2 images, a bad ``val_fraction``.
    """
    root = Path(root).expanduser()
    if labels not in LABEL_MODES:
        raise DatasetError(f"{FOLDER}: --labels must be one of {', '.join(LABEL_MODES)}, got {labels!r}")
    if val_fraction is not None and not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"{FOLDER}: --val-fraction must be in [0, 1), got {val_fraction}")
    if (root / "train").is_dir():
        if val_fraction and (root / "val").is_dir():
            raise _error(root, "both a val/ folder and --val-fraction given; use one")
        classes, train = _scan_root(root / "train", labels)
        val: List[Sample] = []
        if (root / "val").is_dir():
            _, val = _scan_root(root / "val", "folders" if classes else "none", classes or None)
        held_out = "val/ folder" if val else ""
    else:
        classes, train = _scan_root(root, labels)
        val, held_out = [], ""
    default = val_fraction is None and classes and not val
    fraction = DEFAULT_VAL_FRACTION if default else (val_fraction or 0.0)
    if fraction:
        train, val = _split_off(train, fraction, seed)
        held_out = held_out_note(fraction, seed, bool(default)) if val else ""
    where = root / "train" if (root / "train").is_dir() else root
    if not train:
        raise _error(where, f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    if len(train) < 2:
        raise _error(where, f"only {len(train)} training image; self-supervised training needs at least 2")
    return FolderScan(root, classes, train, val, held_out)


def median_short_side(paths: Sequence[str], cap: int = MAX_AUTO_SIZE) -> int:
    """The median short side of (a sample of) the images, from their headers, at most ``cap``."""
    step = max(1, len(paths) // SIZE_SAMPLE)
    sides = []
    for path in paths[::step]:
        try:
            with Image.open(path) as img:
                sides.append(min(img.size))
        except Exception:  # unreadable files are reported when they are decoded
            continue
    if not sides:
        raise _error(Path(paths[0]).parent, "no readable image to measure the image size on")
    return max(1, min(cap, int(round(statistics.median(sides)))))


def _open_rgb(path: str, header_only: bool = False) -> Optional[Image.Image]:
    """A file as an RGB PIL image (any mode converted), or only its header checked.
    Raises OSError/ValueError for unreadable files, DatasetError for a decompression bomb."""
    from frossl_hub.inference import to_model_mode

    try:
        with Image.open(path) as img:
            limit = Image.MAX_IMAGE_PIXELS  # PIL only warns between once and twice the limit
            if limit and img.width * img.height > limit:
                raise Image.DecompressionBombError(f"{img.width}x{img.height} pixels")
            if header_only:
                img.verify()
                return None
            img.load()
            return to_model_mode(img, "RGB")
    except Image.DecompressionBombError as exc:
        raise _error(Path(path), f"image refused, larger than PIL's decompression-bomb limit "
                                 f"of {Image.MAX_IMAGE_PIXELS} pixels ({exc})") from None


def _to_tensor(image: Image.Image) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def read_image(path: str, size: int) -> torch.Tensor:
    """One file as a (3, size, size) uint8 tensor: any mode to RGB, short side resized, center
    crop. Raises OSError/ValueError for unreadable files, DatasetError for a decompression bomb."""
    fitted = ImageOps.fit(_open_rgb(path), (size, size), method=Image.Resampling.BICUBIC)
    return _to_tensor(fitted)


def read_full(path: str) -> torch.Tensor:
    """One file as a (3, H, W) uint8 RGB tensor at its own size (streamed folders)."""
    return _to_tensor(_open_rgb(path))


def _read_or_reason(path: str, size: int) -> Tuple[Optional[torch.Tensor], str]:
    """The decoded image (size 0: only the header checked) or why the file cannot be read."""
    try:
        return (read_image(path, size) if size else _open_rgb(path, header_only=True)), ""
    except DatasetError:
        raise
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError... for broken files
        return None, f"{type(exc).__name__}: {exc}"


def _refuse_or_keep(skipped: List[Tuple[str, str]], strict: bool) -> None:
    if skipped and strict:
        path, reason = skipped[0]
        raise _error(Path(path), f"unreadable image ({reason}); {len(skipped)} unreadable file(s) "
                                 "in all, refused because of --strict")


def decode_folder(samples: Sequence[Sample], classes: List[str], size: int, strict: bool,
                  progress: bool = True) -> ArrayDataset:
    """Every sample decoded into one uint8 (N, 3, size, size) array, on a thread pool with a
    progress bar. Unreadable files are left out (listed in ``skipped``); ``strict`` refuses them.
    """
    from tqdm.auto import tqdm

    paths = [path for path, _ in samples]
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        results = list(tqdm(pool.map(lambda p: _read_or_reason(p, size), paths), total=len(paths),
                            desc=f"decoding {len(paths)} images at {size} px", unit="img",
                            disable=None if progress else True))
    skipped = [(path, reason) for path, (img, reason) in zip(paths, results) if reason]
    _refuse_or_keep(skipped, strict)
    kept = [(img, label) for (img, reason), (_, label) in zip(results, samples) if not reason]
    images = torch.stack([img for img, _ in kept]) if kept else torch.empty(0, 3, size, size, dtype=torch.uint8)
    labels = torch.tensor([label for _, label in kept], dtype=torch.int64)
    return ArrayDataset(images, labels, list(classes), skipped)


def channel_stats(images: torch.Tensor, seed: int = 0) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images in [0, 1], on a seeded sample."""
    n = images.shape[0]
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:STATS_SAMPLE]
    x = images[idx.to(images.device)].double().div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


def check_headers(samples: Sequence[Sample], strict: bool, progress: bool = True
                  ) -> Tuple[List[Sample], List[Tuple[str, str]]]:
    """The samples whose file opens as an image (PIL ``verify``), and the others with why.
    Used for streamed folders, which are too large to decode up front."""
    from tqdm.auto import tqdm

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        reasons = [reason for _, reason in tqdm(
            pool.map(lambda s: _read_or_reason(s[0], 0), samples), total=len(samples),
            desc=f"checking {len(samples)} images", unit="img", disable=None if progress else True)]
    skipped = [(path, reason) for (path, _), reason in zip(samples, reasons) if reason]
    _refuse_or_keep(skipped, strict)
    return [s for s, reason in zip(samples, reasons) if not reason], skipped
