"""Attach a gallery of real test images to a published folder: `python -m train.gallery FOLDER`.

The same function runs for ``python -m train.publish RUN_DIR --gallery N``: the first
images of each class of the data set's official test split, ``N`` in all, saved next to
the weights and listed in ``SHA256SUMS`` (see ``frossl_hub.gallery``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

from frossl_hub.gallery import Gallery, GalleryError, save_gallery, select_gallery
from frossl_hub.hub import CONFIG_NAME
from frossl_hub.specs import get_dataset_spec

from . import data as data_mod

__all__ = ["attach_gallery", "build_gallery", "main"]

PathLike = Union[str, Path]


def build_gallery(dataset: str, count: int, data_dir: Optional[PathLike] = None,
                  cache_dir: Optional[PathLike] = None) -> Gallery:
    """A class-balanced gallery of ``count`` images of ``dataset``'s official test split.

    Raises:
        GalleryError: the data set is streamed from disk (too large to hold a gallery).
        DatasetError: the data cannot be found or read.
    """
    spec = get_dataset_spec(dataset)
    if not data_mod.is_in_memory(spec.name):
        raise GalleryError(f"{spec.name}: galleries are built from data sets held in memory; "
                           f"{spec.title} images are too large for one.")
    test = data_mod.load_arrays(spec.name, data_dir or data_mod.default_data_dir(spec.name),
                                "test", cache_dir)
    return select_gallery(test.images, test.labels, count, test.classes, spec.name,
                          spec.eval_split)


def _folder_dataset(folder: Path) -> str:
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        return str(config["frossl"]["dataset"])
    except (OSError, ValueError, KeyError, TypeError):
        raise GalleryError(f"{folder / CONFIG_NAME} does not name the model's data set "
                           "(frossl.dataset); pass --dataset.") from None


def attach_gallery(folder: PathLike, count: int, data_dir: Optional[PathLike] = None,
                   dataset: Optional[str] = None, cache_dir: Optional[PathLike] = None) -> Path:
    """Build a gallery of ``count`` test images and save it into a published ``folder``;
    the data set defaults to the one its config.json names. Returns the gallery's path."""
    folder = Path(folder)
    gallery = build_gallery(dataset or _folder_dataset(folder), count, data_dir, cache_dir)
    return save_gallery(gallery, folder)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.gallery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a published model folder")
    parser.add_argument("--count", type=int, required=True, help="images in the gallery")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the data set's folder (default: its system location, if any)")
    parser.add_argument("--dataset", default=None, help="default: the folder's config.json")
    parser.add_argument("--cache-dir", type=Path, default=None, help="decoded-image cache")
    args = parser.parse_args(argv)
    try:
        path = attach_gallery(args.folder, args.count, args.data_dir, args.dataset,
                              args.cache_dir)
    except (GalleryError, data_mod.DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size} bytes) and listed it in SHA256SUMS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
