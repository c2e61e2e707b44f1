"""Embed a folder of images to an N×512 float32 array, sharded across torchrun ranks."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ._io import atomic_write
from .inference import BatchTransform, ImageReadError, open_image

__all__ = ["IMAGE_SUFFIXES", "ImageFiles", "ImageWalk", "collate_list", "list_images", "walk_images",
           "embed_folder", "index_path"]

_logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})


@dataclass
class ImageWalk:
    """The image files to embed below a path, and how many other files were left out."""

    files: List[Path]  # sorted
    others: int  # files that are not images by their suffix (notes.txt, .DS_Store...)
    base: Path  # what the paths index is relative to: the folder, or a file's own folder


def walk_images(path: Path) -> ImageWalk:
    """A folder searched recursively (non-image files counted and left out), or one image file.

    Raises:
        ImageReadError: naming ``path``: missing, or a file that is not an image.
    """
    path = Path(path)
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file()]
        files = sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES)
        return ImageWalk(files, len(found) - len(files), path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageReadError(f"{path} is not an image file (image files end in "
                             f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    return ImageWalk([path], 0, path.parent)


def list_images(folder: Path) -> List[Path]:
    """Image files below ``folder``, recursively, in a stable sorted order."""
    if not Path(folder).is_dir():
        raise ImageReadError(f"{folder} is not a folder of images")
    return walk_images(folder).files


def index_path(out: Path) -> Path:
    """The paths index written beside an embeddings file: NAME.paths.txt."""
    return out.with_name(out.name[: -len(out.suffix)] + ".paths.txt" if out.suffix else out.name + ".paths.txt")


class ImageFiles(torch.utils.data.Dataset):
    """Decodes one file to the model's uint8 input (``BatchTransform.to_uint8``); a bad file
    yields None instead of raising."""

    def __init__(self, files: Sequence[Path], transform: Callable) -> None:
        self.files = list(files)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tuple[int, Optional[torch.Tensor], str]:
        try:
            return i, self.transform(open_image(self.files[i])), ""
        except Exception as exc:  # unreadable image: reported, never fatal
            return i, None, f"{type(exc).__name__}: {exc}"


def collate_list(items: list) -> list:
    """A DataLoader collate that keeps the (index, tensor or None, error) items as they are."""
    return items


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a name
            np.save(f, array)

    atomic_write(path, write)


def embed_folder(model: torch.nn.Module, folder: Path, out: Path, batch_size: int = 256,
                 workers: int = 4, normalize: bool = False, rank: int = 0, world: int = 1,
                 progress: bool = True, backend: str = "auto", walk: Optional[ImageWalk] = None
                 ) -> Tuple[int, List[Tuple[str, str]]]:
    """Embed every image below ``folder`` (or ``walk``'s files: ``walk_images``, which also
    takes a single image file) into ``out`` (.npy) plus ``index_path(out)``; the index lists
    paths relative to the folder.

    Workers decode and resize to uint8; each batch is normalised at once and run on
    ``backend`` (``frossl_hub.backends``: auto, torch, onnxruntime). With ``world > 1`` each
    rank embeds files[rank::world] into a shard; rank 0 merges the shards back into input
    order once all are written. ``files`` (default: every image below ``folder``) embeds only
    those, e.g. the new files of a search index. Returns (rows written, skipped files with reasons).
    """
    from tqdm.auto import tqdm

    from .backends import make_runner

    walk = walk or ImageWalk(list_images(folder), 0, Path(folder))
    files, folder = walk.files, walk.base
    mine = files[rank::world]
    transform = BatchTransform(model)
    batches = -(-len(mine) // batch_size)
    # one batch or none: decoding here costs what a worker would, without starting processes
    workers = min(workers, batches) if batches > 1 else 0
    loader = torch.utils.data.DataLoader(ImageFiles(mine, transform.to_uint8), batch_size=batch_size,
                                         num_workers=workers, collate_fn=collate_list)
    model.eval()
    runner = make_runner(model, backend)
    rows: List[np.ndarray] = []
    kept: List[int] = []
    skipped: List[Tuple[str, str]] = []
    with torch.inference_mode():
        for batch in tqdm(loader, desc=f"embed (rank {rank})" if world > 1 else "embed",
                          disable=not progress, unit="batch"):
            good = [(i, t) for i, t, err in batch if t is not None]
            skipped += [(str(mine[i]), err) for i, t, err in batch if t is None]
            if not good:
                continue
            f, _ = runner(transform.normalize(torch.stack([t for _, t in good])))
            if normalize:
                f = torch.nn.functional.normalize(f, dim=1)
            rows.append(f.numpy())
            kept += [i for i, _ in good]
    emb = np.concatenate(rows) if rows else np.zeros((0, model.num_features), np.float32)
    global_index = np.array([rank + world * i for i in kept], dtype=np.int64)
    if world == 1:
        _write_result(out, emb, [files[i] for i in global_index], folder)
        return len(emb), skipped
    _save_npy(_shard(out, rank, world, "emb"), emb)
    _save_npy(_shard(out, rank, world, "idx"), global_index)
    _barrier()
    if rank == 0:
        embs = [np.load(_shard(out, r, world, "emb")) for r in range(world)]
        idxs = [np.load(_shard(out, r, world, "idx")) for r in range(world)]
        all_idx = np.concatenate(idxs)
        order = np.argsort(all_idx, kind="stable")
        merged = np.concatenate(embs)[order]
        _write_result(out, merged, [files[i] for i in all_idx[order]], folder)
        for r in range(world):
            _shard(out, r, world, "emb").unlink(missing_ok=True)
            _shard(out, r, world, "idx").unlink(missing_ok=True)
    _barrier()
    return len(emb), skipped


def _shard(out: Path, rank: int, world: int, kind: str) -> Path:
    """One rank's part file beside ``out``: NAME.rank{r}-of-{world}.{emb,idx}.npy."""
    return out.with_name(f"{out.name}.rank{rank}-of-{world}.{kind}.npy")


def _write_result(out: Path, emb: np.ndarray, paths: Sequence[Path], folder: Path) -> None:
    _save_npy(out, emb.astype(np.float32, copy=False))
    text = "".join(f"{p.relative_to(folder).as_posix()}\n" for p in paths)
    atomic_write(index_path(out), lambda p: p.write_text(text, encoding="utf-8"))


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def init_from_env() -> Tuple[int, int]:
    """(rank, world) from torchrun's environment, initialising gloo/nccl when world > 1."""
    import torch.distributed as dist

    from .runtime import dist_env

    rank, world, _ = dist_env()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank, world
