"""CPU time per request outside the forward pass, stage by stage: the service's request path
before and after issue 22, on one thread, in one process.

Stages of a ``POST /v1/predictions`` with a JSON body of base64 PNGs of the model's input size:

- JSON: the body's bytes to Python objects (before: ``json.loads``; after: ``orjson.loads``);
- validate: the fields (pydantic) and the base64 strings to bytes (``serve.inputs``), unchanged;
- decode: PNG bytes to a validated PIL image (``serve.images.decode_image``);
- preprocess: before, timm's per-image eval transform to float (``frossl_hub.get_transform``)
  and a stack; after, ``BatchTransform.to_uint8`` per image and one ``normalize`` per batch;
- respond: softmax + top-5 and the JSON bytes (before: ``tolist`` + ``json.dumps``;
  after: orjson from NumPy, ``serve.responses``);
- forward (for scale): this request's images alone through eager PyTorch (before) or ONNX
  Runtime (after);
- whole request, in-process: through the FastAPI app over ASGI with httpx's in-process client
  (no sockets, no HTTP parsing): its CPU time minus the stages above is what the framework
  (routing, middleware, dependencies, the batcher's hand-offs) and the client add.

CPU time is ``time.thread_time`` of the measuring thread; the whole request runs on several
threads, so it is measured with ``time.process_time``.

Example::

    python benchmarks/request_path.py --repeats 200
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

try:  # `python benchmarks/NAME.py` puts this folder on sys.path; `python -m benchmarks.NAME` does not
    import _common
except ImportError:
    from benchmarks import _common
import numpy as np
import torch


def cpu_us(fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.thread_time) -> float:
    """Mean CPU microseconds of ``fn`` over ``repeats`` calls, after one untimed call."""
    fn()
    start = clock()
    for _ in range(repeats):
        fn()
    return 1e6 * (clock() - start) / repeats


def make_body(count: int, size: Sequence[int]) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    channels, h, w = size
    texts = []
    for _ in range(count):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        buf = io.BytesIO()
        (image.convert("L") if channels == 1 else image).save(buf, "PNG")
        texts.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return json.dumps({"images": texts}).encode()


def stages(model: torch.nn.Module, body: bytes, repeats: int) -> Dict[str, Dict[str, float]]:
    """{stage: {"before": us, "after": us}} for one request with ``body``."""
    import frossl_hub
    from frossl_hub.backends import make_runner
    from frossl_hub.inference import BatchTransform
    from serve.config import Settings
    from serve.images import decode_image
    import orjson

    from serve.inputs import json_image_request, parse_json_body
    from serve.responses import NumpyJSONResponse
    from serve.schemas import PredictionRequest

    settings = Settings(max_images=64)
    request = parse_json_body(body, settings, PredictionRequest)
    blobs = request.images
    images = [decode_image(b, "image", settings.max_pixels) for b in blobs]
    transform, batch_transform = frossl_hub.get_transform(model), BatchTransform(model)
    torch_runner, ort_runner = make_runner(model, "torch"), make_runner(model, "onnxruntime", 1)
    x = batch_transform(images)
    logits = ort_runner(x)[1]
    labels = list(model.pretrained_cfg["label_names"])

    data = orjson.loads(body)
    def respond(as_numpy: bool) -> Callable[[], object]:
        def run() -> object:
            scores, ids = logits.softmax(dim=1).topk(5, dim=1)
            rows = scores.numpy() if as_numpy else scores.tolist()
            data = {"model": "m", "data": [
                {"index": i, "predictions": [{"label": labels[k], "class_id": k, "score": s}
                                             for k, s in zip(row_ids, row_scores)]}
                for i, (row_ids, row_scores) in enumerate(zip(ids.tolist(), rows))]}
            return NumpyJSONResponse(data).body if as_numpy else json.dumps(data).encode()
        return run

    return {
        "JSON to objects": {"before": cpu_us(lambda: json.loads(body), repeats),
                            "after": cpu_us(lambda: orjson.loads(body), repeats)},
        "validate fields, base64 to bytes": dict.fromkeys(("before", "after"), cpu_us(
            lambda: json_image_request(data, settings, PredictionRequest), repeats)),
        "decode (PNG, checks)": dict.fromkeys(("before", "after"), cpu_us(
            lambda: [decode_image(b, "image", settings.max_pixels) for b in blobs], repeats)),
        "preprocess": {
            "before": cpu_us(lambda: torch.stack([transform(im) for im in images]), repeats),
            "after": cpu_us(lambda: batch_transform.normalize(
                torch.stack([batch_transform.to_uint8(im) for im in images])), repeats)},
        "respond (top-5, JSON bytes)": {"before": cpu_us(respond(False), repeats),
                                        "after": cpu_us(respond(True), repeats)},
        "forward of these images alone (for scale)": {
            "before": cpu_us(lambda: torch_runner(x), repeats),
            "after": cpu_us(lambda: ort_runner(x), repeats)},
    }


def app_cpu_us(model: torch.nn.Module, body: bytes, backend: str, repeats: int) -> float:
    """Process CPU microseconds per request through the whole FastAPI app (ASGI, no sockets)."""
    import httpx

    from serve.app import create_app
    from serve.config import Settings

    app = create_app(Settings(backend=backend, threads=1, preprocess_threads=1), models={"m": model})

    async def run() -> float:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                async def post() -> None:
                    response = await client.post("/v1/predictions", content=body,
                                                 headers={"content-type": "application/json"})
                    assert response.status_code == 200, response.text
                await post()
                start = time.process_time()
                for _ in range(repeats):
                    await post()
                return 1e6 * (time.process_time() - start) / repeats

    return asyncio.run(run())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="published folder (default: random-init)")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--images", type=lambda t: [int(x) for x in t.split(",")], default=[1, 32],
                        help="images per request")
    parser.add_argument("--repeats", type=int, default=200)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    import tempfile

    import frossl_hub

    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    _common.print_header("request path: CPU time per request outside the forward, by stage",
                         [Path(sys.executable).name] + sys.argv)
    with tempfile.TemporaryDirectory(prefix="request-path-") as tmp:
        model = frossl_hub.load(args.model or _common.publish_tiny_model(Path(tmp) / "m", args.dataset))
        size = [int(v) for v in model.pretrained_cfg["input_size"]]
        for count in args.images:
            body = make_body(count, size)
            print(f"\n{count} image(s) of {size} per request ({len(body)} bytes of JSON), "
                  f"{args.repeats} repeats; CPU microseconds per request")
            rows: List[tuple] = []
            results = stages(model, body, args.repeats)
            for stage, us in results.items():
                rows.append((stage, f"{us['before']:.0f}", f"{us['after']:.0f}", f"{us['before'] / us['after']:.2f}"))
            outside = [s for s in results if not s.startswith("forward")]
            before, after = (sum(results[s][k] for s in outside) for k in ("before", "after"))
            rows.append(("all stages outside the forward", f"{before:.0f}", f"{after:.0f}", f"{before / after:.2f}"))
            print(_common.table(["stage", "before us", "after us", "before/after"], rows))
            for backend in ("torch", "onnxruntime"):
                total = app_cpu_us(model, body, backend, max(10, args.repeats // 4))
                print(f"whole request in-process, client included ({backend} backend): "
                      f"{total:.0f} us CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
