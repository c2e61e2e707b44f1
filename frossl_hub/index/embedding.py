"""The embeddings an index holds and its queries: one model, L2-normalised, same preprocessing."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from .._io import sha256_file
from .errors import ModelMismatchError, SearchArgumentError

__all__ = ["ModelIdentity", "check_model", "embed_files", "embed_queries", "model_identity"]


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    weights_sha256: str


def model_identity(name_or_path: Union[str, Path]) -> ModelIdentity:
    """The model's name and the sha256 of its weights file (what an index remembers)."""
    from ..hub import resolve

    resolved = resolve(name_or_path)
    return ModelIdentity(str(name_or_path), sha256_file(resolved.weights))


def check_model(index_sha256: str, index_name: str, model: ModelIdentity) -> None:
    """Raise ModelMismatchError unless ``model`` has the weights the index was built with."""
    if model.weights_sha256 != index_sha256:
        raise ModelMismatchError(
            f"the index {index_name} was built with other weights (sha256 {index_sha256[:12]}...) "
            f"than model {model.name} (sha256 {model.weights_sha256[:12]}...); search it with "
            "the model it was built with, or rebuild it with this one.")


def embed_files(model, root: Path, files: Sequence[Path], staging: Path, rank: int = 0,
                world: int = 1, batch_size: int = 256, workers: int = 4, progress: bool = True
                ) -> Tuple[Optional[np.ndarray], List[str], List[Tuple[str, str]]]:
    """Embed ``files`` (below ``root``) through ``embed_folder``, L2-normalised.

    Returns (N x dim float32 on rank 0, else None; their paths relative to ``root``, in
    order; this rank's skipped files with reasons).
    """
    from ..embed_folder import ImageWalk, embed_folder, index_path

    out = staging / "embeddings.f32.npy"
    _, skipped = embed_folder(model, root, out, batch_size, workers, normalize=True, rank=rank,
                              world=world, progress=progress,
                              walk=ImageWalk(list(files), 0, Path(root)))
    if rank != 0:
        return None, [], skipped
    emb = np.load(out)
    rel = index_path(out).read_text(encoding="utf-8").splitlines()
    return emb, rel, skipped


def embed_queries(model, images: Sequence) -> np.ndarray:
    """Unit-norm float32 embeddings of query images (paths or PIL images), any size or mode:
    preprocessed like the indexed files (and like /v1/embeddings).

    Raises:
        SearchArgumentError: a query file cannot be read as an image.
    """
    from PIL import Image

    from ..inference import embed, open_image

    opened: List[Image.Image] = []
    for image in images:
        if isinstance(image, Image.Image):
            opened.append(image)
            continue
        try:
            opened.append(open_image(image))
        except Exception as exc:  # PIL raises many types for a bad file
            raise SearchArgumentError(f"cannot read query image {image}: "
                                      f"{type(exc).__name__}: {exc}") from None
    return embed(model, opened, normalize=True).numpy().astype(np.float32)
