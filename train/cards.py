"""`python -m train.cards`: regenerate model_cards/<name>.md for every catalog model.

Published models get the card that ships with their weights (bundled folder or
$FROSSL_HUB_DIR); models not trained yet get a card that says so and gives the exact
command that produces them. Tests check the committed cards equal what this generates.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

from frossl_hub._io import atomic_write
from frossl_hub.catalog import CATALOG, CatalogEntry
from frossl_hub.hub import ModelNotFoundError, resolve

from .publish import CARD_TEMPLATE, recipe_command
from .recipes import get_recipe

__all__ = ["CARDS_DIR", "card_for", "generate_cards", "main"]

CARDS_DIR = CARD_TEMPLATE.parent


def _unpublished_card(entry: CatalogEntry) -> str:
    spec = entry.spec
    recipe = get_recipe(entry.dataset)
    command = recipe_command(recipe, data_dir=f"/data/{spec.name}", out=f"runs/{spec.name}")
    return f"""---
library_name: timm
license: apache-2.0
tags: [image-feature-extraction, self-supervised-learning, frossl, timm, resnet18]
---

# {entry.name}

**Status: {entry.status}.** No weights have been published for this model yet, so this card
has no measured numbers.

A ResNet18 (`{entry.architecture}`, timm name `{entry.timm_name}`) pretrained with FroSSL
([arXiv:2310.02903](https://arxiv.org/abs/2310.02903)) on {spec.title}
({spec.in_chans}×{spec.image_size}×{spec.image_size} inputs, {spec.num_classes} classes,
evaluated on the {spec.eval_split} split).

## How to produce it

The paper's recipe ({recipe.epochs:g} epochs, batch {recipe.batch_size}, LARS lr
{recipe.base_lr} × batch/256, invariance weight {recipe.invariance_weight}):

```bash
{command}
```

`python -m train` runs pretraining, the linear probe and publishing; the published folder
(`runs/{spec.name}/published`) then loads with
`frossl_hub.load("runs/{spec.name}/published")` and gets its own measured card.
"""


def _link_plots(card: str, folder: Path, card_dir: Path) -> str:
    """Point the card's ``plots/...`` images at the weights folder, as seen from ``card_dir``."""
    rel = Path(os.path.relpath(folder / "plots", card_dir)).as_posix()
    return card.replace("](plots/", f"]({rel}/")


def card_for(entry: CatalogEntry, card_dir: Optional[Path] = None) -> str:
    """The card of one catalog model: its shipped card when published, else how to make it.
    With ``card_dir``, the shipped card's plot links are rewritten to work from there."""
    if entry.has_weights:
        try:
            folder = resolve(entry.name, check=False).folder
        except ModelNotFoundError:
            folder = None
        if folder is not None and (folder / "README.md").is_file():
            card = (folder / "README.md").read_text(encoding="utf-8")
            return card if card_dir is None else _link_plots(card, folder, Path(card_dir))
    return _unpublished_card(entry)


def generate_cards(out_dir: Path = CARDS_DIR) -> Dict[str, Path]:
    """Write one card per catalog model into ``out_dir``; returns {name: path}."""
    written = {}
    for name, entry in sorted(CATALOG.items()):
        text = card_for(entry, card_dir=Path(out_dir).resolve())
        path = Path(out_dir) / f"{name}.md"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write(path, lambda p, t=text: p.write_text(t, encoding="utf-8"))
        written[name] = path
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.cards", description=__doc__)
    parser.add_argument("--out", type=Path, default=CARDS_DIR)
    args = parser.parse_args(argv)
    for name, path in generate_cards(args.out).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
