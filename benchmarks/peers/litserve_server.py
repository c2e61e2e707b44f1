"""LitServe: a ``LitAPI`` whose ``batch``/``unbatch`` gather up to ``max_batch_size=32``
concurrent requests into one forward pass. ``GET /health`` once set up; ``POST /predict``
with the JSON body.

No ``from __future__ import annotations`` here: LitServe reads ``decode_request``'s annotation
at run time to build its endpoint."""

from typing import Any, Dict, List, Sequence, Tuple

import litserve as ls
import torch

from common import Model, build_parser, split

MAX_BATCH_SIZE = 32


class FrosslAPI(ls.LitAPI):
    """The model behind LitServe (at module level: LitServe pickles it into its worker)."""

    def __init__(self, source: str, threads: int) -> None:
        super().__init__(max_batch_size=MAX_BATCH_SIZE, batch_timeout=0.0)
        self.source, self.threads = source, threads

    def setup(self, device: str) -> None:
        self.net = Model(self.source, self.threads)

    def decode_request(self, request: Dict[str, Any]) -> torch.Tensor:
        return self.net.decode(request)

    def batch(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, List[int]]:
        return torch.cat(list(inputs)), [len(x) for x in inputs]

    def predict(self, batch: Any) -> Any:
        if isinstance(batch, tuple):  # batched requests
            images, sizes = batch
            return self.net.logits(images), sizes
        return self.net.logits(batch)

    def unbatch(self, output: Tuple[torch.Tensor, List[int]]) -> List[torch.Tensor]:
        logits, sizes = output
        return split(logits, sizes)

    def encode_response(self, logits: torch.Tensor) -> Dict[str, Any]:
        return {"predictions": self.net.top_k(logits)}


def main() -> None:
    args = build_parser(__doc__).parse_args()
    server = ls.LitServer(FrosslAPI(args.model, args.threads), accelerator="cpu",
                          workers_per_device=1)
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, log_level="warning",
               generate_client_file=False)


if __name__ == "__main__":
    main()
