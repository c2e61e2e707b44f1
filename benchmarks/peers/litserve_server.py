"""LitServe: a ``LitAPI`` whose ``batch``/``unbatch`` gather up to ``max_batch_size=32``
concurrent requests into one forward pass. ``GET /health`` once set up; ``POST /predict``
with the JSON body."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch

from common import Model, build_parser, split

MAX_BATCH_SIZE = 32


def make_api(source: str, threads: int) -> Any:
    import litserve as ls

    class FrosslAPI(ls.LitAPI):
        def setup(self, device: str) -> None:
            self.net = Model(source, threads)

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

    return FrosslAPI(max_batch_size=MAX_BATCH_SIZE, batch_timeout=0.0)


def main() -> None:
    import litserve as ls

    args = build_parser(__doc__).parse_args()
    server = ls.LitServer(make_api(args.model, args.threads), accelerator="cpu",
                          workers_per_device=1)
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, log_level="warning",
               generate_client_file=False)


if __name__ == "__main__":
    main()
