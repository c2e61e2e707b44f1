"""Frozen features of a labelled folder through the ``embed`` path (ONNX Runtime on the CPU),
extracted once and cached in the user cache folder."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch

from frossl_hub.embed_folder import embed_folder, index_path, list_images
from frossl_hub.caches import FEATURES, cache_root
from frossl_hub.onnx_export import weights_digest

from ..data.user_folder import Sample

__all__ = ["features_key", "folder_features"]


def features_key(model: torch.nn.Module, root: Path) -> str:
    """What the cached features depend on: the weights, the preprocessing, every file's
    path, size and modification time."""
    digest = hashlib.sha256(weights_digest(model).encode())
    cfg = dict(model.pretrained_cfg)
    digest.update(repr([cfg.get(k) for k in ("input_size", "crop_pct", "crop_mode", "interpolation",
                                             "mean", "std")]).encode())
    for path in list_images(root):
        st = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:40]


def folder_features(model: torch.nn.Module, root: Path, splits: Sequence[Sequence[Sample]],
                    workers: int = 4, progress: bool = True
                    ) -> Tuple[List[Tuple[torch.Tensor, torch.Tensor]], List[str]]:
    """Per split: (features (N, D) float32, labels (N,)) of its readable images, and the
    files that could not be read.

    Every image below ``root`` is embedded once by ``frossl_hub.embed_folder`` (what
    ``python -m frossl_hub embed`` runs) into ``<cache>/transfer-features/KEY.npy``.
    """
    root = Path(root)
    out = cache_root() / FEATURES / f"{features_key(model, root)}.npy"
    if not (out.is_file() and index_path(out).is_file()):
        out.parent.mkdir(parents=True, exist_ok=True)
        embed_folder(model, root, out, workers=workers, progress=progress)
    emb = torch.from_numpy(np.load(out))
    rows = {line: i for i, line in enumerate(index_path(out).read_text(encoding="utf-8").splitlines())}
    found, missing = [], []
    for samples in splits:
        names = [Path(os.path.relpath(path, root)).as_posix() for path, _ in samples]
        keep = [i for i, name in enumerate(names) if name in rows]
        missing += [samples[i][0] for i in range(len(samples)) if names[i] not in rows]
        index = torch.tensor([rows[names[i]] for i in keep], dtype=torch.int64)
        labels = torch.tensor([samples[i][1] for i in keep], dtype=torch.int64)
        found.append((emb[index].float(), labels))
    return found, missing
