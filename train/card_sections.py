"""Two card sections that older published cards lack: the whole chain of runs, and published
accuracies of comparable methods; `python -m train.card_sections FOLDER...` adds them to a
published folder's card from its own config.json (and rewrites its SHA256SUMS).

Each section is fenced by HTML comments, so refreshing a card replaces it in place and a
card rendered by ``train.publish`` already has both.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from frossl_hub.hub import CARD_NAME, CONFIG_NAME, write_sums
from frossl_hub._io import atomic_write
from frossl_hub.stems import get_stem

from .init_from import chain_history
from .references import references_for

__all__ = ["chain_section", "references_section", "refresh_card", "main"]

CHAIN_ANCHOR = "Command that produced this run:"  # the chain goes above the command
REFERENCES_ANCHOR = "## How to use"  # published accuracies go at the end of the results


def _fenced(name: str, body: str) -> str:
    return f"<!-- {name} -->\n{body.strip()}\n<!-- /{name} -->\n\n" if body else ""


def chain_section(runs: Optional[List[Dict[str, Any]]]) -> str:
    """The chain as a table, one row per run, oldest first, and its totals; empty for a
    single run (the training table says it all) or when the runs are not known."""
    if not runs or len(runs) < 2:
        return ""
    rows = "\n".join(f"| {i} | `{run['architecture']}` ({get_stem(run['architecture']).description}) "
                     f"| {float(run['epochs']):.2f} | {float(run['train_minutes']):.1f} |"
                     for i, run in enumerate(runs, 1))
    epochs = sum(float(run["epochs"]) for run in runs)
    minutes = sum(float(run["train_minutes"]) for run in runs)
    body = (f"The whole chain: {len(runs)} runs, each started `--init-from` the one before it "
            "(the projector fresh each time).\n\n"
            "| run | architecture (stem) | epochs | training minutes |\n|---|---|---|---|\n"
            f"{rows}\n| all | | **{epochs:.2f}** | **{minutes:.1f}** |")
    return _fenced("chain", body)


def references_section(dataset: str) -> str:
    """Published accuracies of other methods on ``dataset``, named as theirs; empty if none."""
    refs = references_for(dataset)
    if not refs:
        return ""
    source = refs[0].source
    rows = "\n".join(f"| {ref.method} | {ref.architecture} | {ref.epochs:,} | {ref.top1:.2f} % |" for ref in refs)
    body = (f"For comparison, published linear-probe top-1 of comparable methods ({source}; "
            "their numbers, not measured here):\n\n"
            "| method | backbone | pretraining epochs | linear top-1 |\n|---|---|---|---|\n" + rows)
    return _fenced("references", body)


def _replace(card: str, name: str, section: str, anchor: str) -> str:
    """``card`` with its fenced ``name`` section replaced by ``section``, placed above ``anchor``."""
    card = re.sub(rf"<!-- {name} -->\n.*?<!-- /{name} -->\n\n", "", card, flags=re.S)
    if not section:
        return card
    if anchor not in card:
        raise ValueError(f"the card has no {anchor!r} line to put the {name} section above")
    return card.replace(anchor, section + anchor, 1)


def refresh_card(folder: Path) -> bool:
    """Rewrite ``folder``'s card with both sections from its config.json; True if it changed."""
    folder = Path(folder)
    frossl = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")).get("frossl") or {}
    card_path = folder / CARD_NAME
    card = card_path.read_text(encoding="utf-8")
    new = _replace(card, "chain", chain_section(chain_history(frossl)), CHAIN_ANCHOR)
    new = _replace(new, "references", references_section(frossl.get("dataset", "")), REFERENCES_ANCHOR)
    if new == card:
        return False
    atomic_write(card_path, lambda p: p.write_text(new, encoding="utf-8"))
    write_sums(folder)
    return True


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.card_sections", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+", help="published model folders")
    args = parser.parse_args(argv)
    for folder in args.folders:
        try:
            changed = refresh_card(folder)
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: {folder}: {exc}", file=sys.stderr)
            return 2
        print(f"{folder}: {'refreshed' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
