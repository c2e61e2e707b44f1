"""A plain FastAPI endpoint: one forward pass per request, no batching (what people write by
hand). ``GET /healthz`` once the model is loaded; ``POST /predict`` with the JSON body."""
from __future__ import annotations

from typing import Any, Dict, List

from common import Model, build_parser


def main() -> None:
    import uvicorn
    from fastapi import Body, FastAPI

    args = build_parser(__doc__).parse_args()
    model = Model(args.model, args.threads)
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> Dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: Dict[str, Any] = Body(...)) -> Dict[str, List[Any]]:
        return {"predictions": model.top_k(model.logits(model.decode(body)))}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
