"""What the peer servers share: loading the model, reading the JSON body, answering top-5.

Written as a user of frossl_hub would: ``frossl_hub.load``, ``frossl_hub.get_transform`` per
image, the eager PyTorch model, softmax and top-k; the body is the service's JSON
``{"images": ["<base64 PNG>", ...]}``.
"""
from __future__ import annotations

import argparse
import base64
import io
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

TOP_K = 5


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", required=True, help="published model folder or catalog name")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True, help="torch intra-op threads")
    return parser


class Model:
    """The eager PyTorch model, its per-image transform and its labels."""

    def __init__(self, source: str, threads: int) -> None:
        import frossl_hub

        torch.set_num_threads(threads)
        self.model = frossl_hub.load(source)
        self.transform = frossl_hub.get_transform(self.model)
        self.labels: List[str] = list(self.model.pretrained_cfg.get("label_names") or
                                      [str(i) for i in range(self.model.num_classes)])

    def decode(self, body: Dict[str, Any]) -> torch.Tensor:
        """The request's images as one preprocessed (N, C, H, W) batch."""
        from PIL import Image

        return torch.stack([self.transform(Image.open(io.BytesIO(base64.b64decode(text))))
                            for text in body["images"]])

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(batch)

    def top_k(self, logits: torch.Tensor) -> List[List[Dict[str, Any]]]:
        scores, ids = logits.softmax(dim=1).topk(min(TOP_K, logits.shape[1]), dim=1)
        return [[{"label": self.labels[k], "class_id": k, "score": s}
                 for k, s in zip(row_ids, row_scores)]
                for row_ids, row_scores in zip(ids.tolist(), scores.tolist())]


def split(logits: torch.Tensor, sizes: Sequence[int]) -> List[torch.Tensor]:
    return list(torch.split(logits, list(sizes)))
