"""The models a service holds: loaded in a background thread, each behind its own micro-batcher."""
from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from PIL import Image

from frossl_hub.backends import available_cores, head_classes, make_runner, resolve_backend
from frossl_hub.runtime import resolve_device

from .batcher import MicroBatcher
from .config import ModelSpec, Settings
from .exceptions import ModelLoadFailed, ModelsLoading, QueueFull, UnknownModel
from .gallery import GalleryIndex, load_gallery_index, model_folder
from .images import preprocess_images
from .inputs import ImageRequest
from .metrics import ServiceMetrics
from .schemas import ModelInfo
from .workers import WorkerReadiness, threads_per_worker, worker_count

__all__ = [
    "ModelHandle",
    "ModelRegistry",
    "describe_model",
    "folder_config",
    "inference_threads_for",
    "preprocess_threads_for",
    "resolve_backend_for",
    "resolve_device",
    "torch_threads_for",
    "workers_for",
]

_logger = logging.getLogger("serve")

LOADING, READY, FAILED = "loading", "ready", "failed"


def workers_for(settings: Settings) -> int:
    """The worker processes ``settings.workers`` means on this machine (``auto`` resolved)."""
    return worker_count(settings.workers, available_cores())


def _cores_per_worker(settings: Settings) -> int:
    return max(1, available_cores() // workers_for(settings))


def resolve_backend_for(settings: Settings) -> str:
    """``torch`` or ``onnxruntime``: what ``settings.backend`` means on ``settings.device``."""
    return resolve_backend(settings.backend, resolve_device(settings.device))


def inference_threads_for(settings: Settings) -> int:
    """Intra-op threads of the forward pass (``auto``: ``serve.workers.auto_threads``)."""
    return threads_per_worker(settings.threads, settings.workers, available_cores())


def torch_threads_for(settings: Settings) -> int:
    """torch's intra-op threads: the forward's when torch runs it; else 1, so torch's pool
    (which only normalises batches and ranks scores then) never competes with ONNX Runtime's."""
    return inference_threads_for(settings) if resolve_backend_for(settings) == "torch" else 1


def preprocess_threads_for(settings: Settings) -> int:
    """Image decoding threads. About one per core: more would only starve the event loop
    and the forward pass of CPU (decoding releases the GIL, so they all run at once)."""
    return settings.preprocess_threads or max(2, _cores_per_worker(settings))


def folder_config(model: torch.nn.Module) -> Dict[str, Any]:
    """The config.json next to the weights a model was loaded from ({} if none)."""
    from frossl_hub.hub import CONFIG_NAME, load_config

    folder = model_folder(model)
    if folder is None or not (folder / CONFIG_NAME).is_file():
        return {}
    try:
        return load_config(folder)
    except ValueError:
        return {}


def _catalog_entry(source: str) -> Any:
    from frossl_hub.catalog import get_entry

    if "/" in source or source.startswith("hf-hub:") or Path(source).expanduser().exists():
        return None
    try:
        return get_entry(source)
    except RuntimeError:
        return None


def describe_model(name: str, source: str, model: torch.nn.Module, backend: str = "torch",
                   device: Optional[str] = None) -> ModelInfo:
    """Card facts of a loaded model: catalog entry first, else the folder's config.json."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    config = folder_config(model)
    entry = _catalog_entry(source)
    frossl = config.get("frossl") if isinstance(config.get("frossl"), dict) else {}
    if entry is not None:
        dataset, metrics = entry.dataset, dict(entry.metrics)
    else:
        dataset = frossl.get("dataset")
        metrics = dict(frossl.get("metrics") or {})
    num_classes = head_classes(model)
    labels = cfg.get("label_names") or config.get("label_names")
    labels = [str(x) for x in labels] if labels and len(labels) == num_classes else None
    return ModelInfo(
        name=name,
        source=source,
        architecture=str(config.get("architecture") or cfg.get("architecture")
                         or type(model).__name__),
        dataset=dataset,
        embedding_dim=int(getattr(model, "num_features", 0)),
        num_classes=num_classes,
        label_names=labels,
        input_size=[int(x) for x in cfg.get("input_size", (3, 224, 224))],
        metrics=metrics,
        backend=backend,
        device=device or str(next(model.parameters()).device),
    )


class ModelHandle:
    """One served model: its preprocessing, its forward pass (any backend), its batcher and its
    card facts.

    ``await run(request, max_pixels)`` serves a parsed request through the batcher;
    ``infer(images)`` runs PIL images directly (start-up work such as a gallery).
    """

    def __init__(self, name: str, source: str, model: torch.nn.Module, settings: Settings,
                 metrics: ServiceMetrics, executor: ThreadPoolExecutor) -> None:
        from frossl_hub.inference import BatchTransform

        self.name = name
        self.model = model.eval()
        self.transform = BatchTransform(model)
        self.runner = make_runner(model, settings.backend, inference_threads_for(settings))
        self.info = describe_model(name, source, model, self.runner.backend, self.runner.device)
        metrics.model_info.labels(model=name, backend=self.runner.backend,
                                  device=self.runner.device).set(1)
        self.has_head = self.info.num_classes > 0
        self.executor = executor  # shared by the registry's models
        self._decoding = 0  # images of admitted requests still being decoded
        self.gallery: Optional[GalleryIndex] = None  # set by the registry once embedded
        self.batcher = MicroBatcher(self.runner, name, settings.max_batch_size,
                                    settings.max_wait_ms, settings.max_queue, metrics,
                                    collate=self.collate)

    @property
    def label_names(self) -> List[str]:
        return self.info.label_names or [str(i) for i in range(self.info.num_classes)]

    def collate(self, parts: List[torch.Tensor]) -> torch.Tensor:
        """The model input of one forward pass: uint8 rows (decoded images) are normalised at
        once; float32 rows came preprocessed (the V2 ``pixel_values`` input) and pass as sent."""
        if all(part.dtype == torch.uint8 for part in parts):
            return self.transform.normalize(torch.cat(parts))
        return torch.cat([self.transform.normalize(part) if part.dtype == torch.uint8 else part
                          for part in parts])

    def forward(self, batch: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Pooled embeddings (N, D) and linear-probe logits (N, K) of a (N, C, H, W) uint8
        batch: normalised at once, then ONE forward pass."""
        return self.runner(self.collate([batch]))

    def infer(self, images: Sequence[Image.Image]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and logits of PIL images, outside the batcher (call it off the event loop)."""
        return self.forward(torch.stack([self.transform.to_uint8(image) for image in images]))

    async def run(self, inputs: ImageRequest, max_pixels: int,
                  on_preprocessed: Optional[Callable[[torch.Tensor], None]] = None
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and logits for a request's images, in input order.

        Decoding and resizing run in the registry's thread pool, the forward pass in the
        batcher's thread (shared with concurrent requests); the event loop only waits.
        ``on_preprocessed`` is handed the (N, C, H, W) uint8 batch the model is given (at its
        input size and colour mode, before normalisation).

        Raises:
            InvalidInput, UnsupportedMedia, TooLarge: a bad image.
            QueueFull, ShuttingDown: no room for the images now.
        """
        count = len(inputs.images)
        self._check_room(count)  # refuse before decoding anything
        self._decoding += count  # only touched on the event loop: no lock needed
        try:
            batch = await asyncio.get_running_loop().run_in_executor(
                self.executor, functools.partial(preprocess_images, inputs.images,
                                                 inputs.labels, max_pixels,
                                                 self.transform.to_uint8))
        finally:
            self._decoding -= count
        if on_preprocessed is not None:
            on_preprocessed(batch)
        return await self.batcher.submit(batch)

    async def run_tensor(self, batch: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and logits of an already-preprocessed float32 (N, C, H, W) batch, through
        the same batcher and queue limit as images.

        Raises:
            QueueFull, ShuttingDown: no room for the rows now.
        """
        self._check_room(int(batch.shape[0]))
        return await self.batcher.submit(batch)

    def _check_room(self, count: int) -> None:
        """QueueFull unless ``count`` more images fit in max_queue, counting those being decoded."""
        batcher = self.batcher
        pending = self._decoding + batcher.queued
        if pending + count > batcher.max_queue:
            if batcher.metrics:
                batcher.metrics.rejected.labels(model=self.name).inc()
            raise QueueFull(f"model {self.name} has {pending} images pending (max_queue "
                            f"{batcher.max_queue}); retry shortly.")

    def warm_up(self) -> None:
        """One tiny forward pass so the first request does not pay for lazy initialisation."""
        self.forward(torch.zeros(1, *self.info.input_size, dtype=torch.uint8))

    def start(self) -> "ModelHandle":
        self.batcher.start()
        return self

    def close(self) -> None:
        self.batcher.close()


class ModelRegistry:
    """The service's models by name; loads them off the event loop and reports progress.

    Args:
        settings: which models, on which device, with which batching knobs.
        metrics: shared with the batchers.
        models: already-loaded models by name (skips loading; for tests and embedding).
    """

    def __init__(self, settings: Settings, metrics: ServiceMetrics,
                 models: Optional[Mapping[str, torch.nn.Module]] = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._preloaded = dict(models) if models is not None else None
        if self._preloaded is not None and not self._preloaded:
            raise ValueError("models={} holds no model; pass None to load settings.models")
        if self._preloaded is not None:  # keep the --model source of a same-named model
            sources = {spec.name: spec.source for spec in settings.models}
            self.specs: Tuple[ModelSpec, ...] = tuple(
                ModelSpec(n, sources.get(n, n)) for n in self._preloaded)
        else:
            self.specs = settings.models
        self.default_name = self.specs[0].name
        self.handles: Dict[str, ModelHandle] = {}
        self._state = LOADING  # this process's models; ``state`` also waits for the other workers
        self.peers = WorkerReadiness.from_env(workers_for(settings))
        self.error: Optional[str] = None
        self._lock = threading.Lock()
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        self.executor = ThreadPoolExecutor(preprocess_threads_for(settings),
                                           thread_name_prefix="preprocess")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Preloaded models are ready at once; others load in a background thread."""
        if self._preloaded is not None:
            for spec in self.specs:
                model = self._preloaded[spec.name]
                handle = ModelHandle(spec.name, spec.source, model, self.settings, self.metrics,
                                     self.executor)
                handle.gallery = load_gallery_index(handle)
                self._add(handle)
            self._set_ready()
            return
        self._thread = threading.Thread(target=self._load_all, name="model-loader", daemon=True)
        self._thread.start()

    def _load_all(self) -> None:
        import frossl_hub

        for spec in self.settings.models:
            started = time.perf_counter()
            _logger.info("loading model %s from %s on %s", spec.name, spec.source, self.settings.device)
            try:  # an unavailable device fails the model like any other load error
                model = frossl_hub.load(spec.source, device=resolve_device(self.settings.device))
                handle = ModelHandle(spec.name, spec.source, model, self.settings, self.metrics,
                                     self.executor)
                handle.warm_up()
                handle.gallery = load_gallery_index(handle)
            except Exception as exc:
                # clients see the model and the error type; paths and details go to the log
                self.error = f"model {spec.name!r} failed to load ({type(exc).__name__})"
                self._state = FAILED
                _logger.error("loading model %s from %s failed: %s", spec.name, spec.source, exc,
                              exc_info=exc)
                return
            if not self._add(handle):
                return
            _logger.info("model %s ready in %.1f s (%d classes, %d-d embeddings)", spec.name,
                         time.perf_counter() - started, handle.info.num_classes,
                         handle.info.embedding_dim)
        self._set_ready()

    def _set_ready(self) -> None:
        self._state = READY
        if self.peers is not None:
            self.peers.mark_ready()

    def _add(self, handle: ModelHandle) -> bool:
        with self._lock:
            if self._closed:
                return False
            self.handles[handle.name] = handle.start()
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            handles = list(self.handles.values())
        if self.peers is not None:
            self.peers.clear()
        for handle in handles:
            handle.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ lookups

    @property
    def state(self) -> str:
        """loading, ready or failed; with ``--workers N``, ready only once every worker's
        models are loaded (``serve.workers.WorkerReadiness``)."""
        if self._state == READY and self.peers is not None and not self.peers.all_ready():
            return LOADING
        return self._state

    @property
    def ready(self) -> bool:
        return self.state == READY

    def require_ready(self) -> None:
        """Raise ModelsLoading or ModelLoadFailed unless every model is loaded."""
        state = self.state
        if state == LOADING:
            raise ModelsLoading("models are still loading; retry shortly (GET /healthz turns "
                                "200 when ready).")
        if state == FAILED:
            raise ModelLoadFailed(f"model loading failed: {self.error}; see the server log.")

    def get(self, name: Optional[str] = None) -> ModelHandle:
        """The handle for a requested model name (None: the default model).

        Raises:
            ModelsLoading, ModelLoadFailed: not ready.
            UnknownModel: the service has no such model (the message lists the served ones).
        """
        self.require_ready()
        key = self.default_name if name is None or not str(name).strip() else str(name).strip()
        handle = self.handles.get(key)
        if handle is None:
            for spec in self.specs:  # also accept the --model source and catalog spellings
                if key == spec.source or _same_catalog_name(key, spec.name):
                    handle = self.handles.get(spec.name)
                    break
        if handle is None:
            raise UnknownModel(f"unknown model {name!r}; this service serves: "
                               f"{', '.join(sorted(self.handles))}.")
        return handle

    def infos(self) -> List[ModelInfo]:
        return [self.handles[s.name].info for s in self.specs if s.name in self.handles]


def _same_catalog_name(key: str, name: str) -> bool:
    from frossl_hub.catalog import clean_name

    return "/" not in key and clean_name(key) == name
