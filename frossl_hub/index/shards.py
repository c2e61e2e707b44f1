"""Fill a FAISS index from the stored embeddings, in one shard per torchrun process.

The way autofaiss builds large indexes: rank 0 trains the (empty) IVF index on a sample and
writes it; every rank adds its own rows (``rank::world``, ids = row numbers) to a copy and
writes that shard; rank 0 merges the shards' inverted lists with FAISS's ``merge_from``. A
Flat index needs no training and adding is a copy, so rank 0 fills it alone.
"""
from __future__ import annotations

from pathlib import Path
import numpy as np

from .factory import add_rows, is_ivf, make_index, train_index

__all__ = ["barrier", "fill_index", "gather"]


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def barrier() -> None:
    dist = _dist()
    if dist is not None:
        dist.barrier()


def gather(obj, world: int) -> list:
    """Every rank's ``obj`` (a list of one item when not distributed)."""
    dist = _dist()
    if dist is None or world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def fill_index(staging: Path, emb_path: Path, factory: str, dim: int, rank: int = 0,
               world: int = 1, trained=None, progress: bool = True):
    """The filled FAISS index on rank 0 (None on other ranks).

    Args:
        emb_path: the N x dim embeddings (.npy), readable by every rank.
        trained: an already trained empty index to reuse (``index add`` of an IVF index).
    """
    import faiss

    emb = np.load(emb_path, mmap_mode="r")
    if not is_ivf(factory):
        if rank != 0:
            return None
        index = make_index(factory, dim)
        add_rows(index, emb, progress=progress)
        return index
    trained_path = staging / "trained.index"
    if rank == 0:
        index = trained if trained is not None else make_index(factory, dim)
        train_index(index, emb, progress=progress)
        faiss.write_index(index, str(trained_path))
    barrier()
    shard = faiss.read_index(str(trained_path))
    mine = np.arange(rank, len(emb), world, dtype=np.int64)
    add_rows(shard, emb, mine, progress=progress,
             desc=f"add (rank {rank})" if world > 1 else "add")
    if world == 1:
        trained_path.unlink()
        return shard
    faiss.write_index(shard, str(_shard_path(staging, rank)))
    barrier()
    merged = None
    if rank == 0:
        merged = faiss.read_index(str(_shard_path(staging, 0)))
        for r in range(1, world):
            other = faiss.read_index(str(_shard_path(staging, r)))
            faiss.extract_index_ivf(merged).merge_from(faiss.extract_index_ivf(other), 0)
        merged.ntotal = faiss.extract_index_ivf(merged).ntotal  # a wrapper (OPQ...) follows
        for r in range(world):
            _shard_path(staging, r).unlink()
        trained_path.unlink()
    barrier()
    return merged


def _shard_path(staging: Path, rank: int) -> Path:
    return staging / f"shard{rank}.index"

