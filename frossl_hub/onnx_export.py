"""Export a loaded model to one ONNX graph, and keep exports in a cache keyed by the weights.

The graph takes the preprocessed (N, C, H, W) float batch (dynamic N) and returns
``embedding`` (the pooled features, as ``frossl_hub.embed``) and, when the model has a
linear-probe head, ``logits``. Preprocessing stays outside the graph: the sidecar JSON
written beside it (``FILE.onnx.json``) copies the model's pretrained cfg and records the
sha256 of the safetensors the weights came from.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import torch

from ._io import atomic_write, atomic_write_json, sha256_file
from .caches import ONNX, cache_root
from .heads import head_classes

__all__ = ["DEFAULT_OPSET", "OUTPUTS", "TEMP_PREFIX", "cached_onnx", "export_onnx", "sidecar_path",
           "weights_digest"]

_logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18  # the torch.export-based exporter's own opset
MIN_OPSET = 18  # it converts to older ones only for some graphs (not ResNet's ReduceMean)
OUTPUTS = ("embedding", "logits")
INPUT_NAME = "input"
EXPORT_LOCK_TIMEOUT_S = 600  # longest wait for another process's export of the same graph
TEMP_PREFIX = "frossl-hub-onnx-"  # a temporary folder used when the cache cannot be written
EXPORT_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_PREPROCESSING_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")


class _Outputs(torch.nn.Module):
    """The exported function: pooled embedding, plus the probe's logits when there is a head."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.has_head = head_classes(model) > 0

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        features = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        if self.has_head:
            return features, self.model.get_classifier()(features)
        return (features,)


def sidecar_path(path: Union[str, Path]) -> Path:
    """Where the metadata of an exported graph lives: ``FILE.onnx.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's tensors as float32 (names, shapes and values): the cache key."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        value = tensor.detach().to("cpu", torch.float32 if tensor.is_floating_point() else tensor.dtype)
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype};".encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _source_sha256(model: torch.nn.Module) -> Optional[str]:
    weights = (getattr(model, "pretrained_cfg", None) or {}).get("file")
    if weights and Path(weights).is_file() and str(weights).endswith(".safetensors"):
        return sha256_file(weights)
    return None


def _sidecar(model: torch.nn.Module, opset: int, dtype: str, has_head: bool,
             digest: str) -> Dict[str, Any]:
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    channels, height, width = cfg.get("input_size", (3, 224, 224))
    return {
        "format": "onnx",
        "opset": opset,
        "dtype": dtype,
        "input": {"name": INPUT_NAME, "shape": ["batch", channels, height, width]},
        "outputs": list(OUTPUTS if has_head else OUTPUTS[:1]),
        "architecture": cfg.get("architecture"),
        "num_classes": head_classes(model),
        "embedding_dim": int(getattr(model, "num_features", 0)),
        "source_weights": cfg.get("file"),
        "source_sha256": _source_sha256(model),
        "weights_sha256": digest,
        "preprocessing": {k: cfg[k] for k in _PREPROCESSING_KEYS if k in cfg},
        "label_names": cfg.get("label_names"),
    }


def _export(model: torch.nn.Module, opset: int, dtype: str) -> Tuple[Any, bool]:
    """(torch.onnx.ONNXProgram, whether it has the logits output)."""
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(EXPORT_DTYPES)}, got {dtype!r}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is older than torch's ONNX exporter writes; use "
                         f"--opset {MIN_OPSET} or newer.")
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes are not ours to fix
        wrapper = _Outputs(copy.deepcopy(model).to("cpu", EXPORT_DTYPES[dtype]).eval())
        channels, height, width = wrapper.model.pretrained_cfg.get("input_size", (3, 224, 224))
        example = torch.zeros(2, channels, height, width, dtype=EXPORT_DTYPES[dtype])
        program = torch.onnx.export(
            wrapper, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
            output_names=list(OUTPUTS if wrapper.has_head else OUTPUTS[:1]),
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, verbose=False)
    written = program.model.opset_imports.get("")
    if written != opset:
        raise ValueError(f"torch's ONNX exporter wrote opset {written}, not the {opset} asked for; "
                         f"use --opset {written}.")
    return program, wrapper.has_head


def _save(program: Any, path: Path, meta: Dict[str, Any]) -> Path:
    atomic_write(path, lambda tmp: program.save(str(tmp), external_data=False))
    atomic_write_json(sidecar_path(path), meta)
    return path


def export_onnx(model: torch.nn.Module, path: Union[str, Path], opset: int = DEFAULT_OPSET,
                dtype: str = "float32") -> Path:
    """Write ``model`` as an ONNX graph to ``path`` (atomically) with its sidecar JSON.

    Args:
        model: a loaded timm model (any head; ``num_classes=0`` exports the embedding only).
        path: the .onnx file to write; its folder is created.
        opset: ONNX opset of the graph.
        dtype: float32 (default, also for float16 weights) or float16 (a float16 graph).

    Returns:
        ``path``.
    """
    program, has_head = _export(model, opset, dtype)
    meta = _sidecar(model, opset, dtype, has_head, weights_digest(model))
    return _save(program, Path(path), meta)


def _cached(path: Path, digest: str) -> bool:
    try:
        meta = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return path.is_file() and meta.get("weights_sha256") == digest


@contextlib.contextmanager
def _export_lock(path: Path) -> Iterator[None]:
    """Hold ``PATH.lock`` while exporting, so of several processes starting at once (the
    service's workers) one exports and the others wait, then load its file. A cache folder
    where no lock can be made (read-only) or a lock held too long does not stop the export."""
    from filelock import FileLock, Timeout

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock", timeout=EXPORT_LOCK_TIMEOUT_S)
        lock.acquire()
    except Timeout:
        _logger.warning("waited %d s for another process exporting %s; exporting here too",
                        EXPORT_LOCK_TIMEOUT_S, path)
        yield
        return
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


def cached_onnx(model: torch.nn.Module, opset: int = DEFAULT_OPSET) -> Path:
    """The float32 ONNX export of ``model``, from the cache when its weights were exported
    before (key: ``weights_digest``), else exported into it now, by one process at a time.

    A cache folder that cannot be written (read-only, full) is not fatal: the graph goes to a
    temporary folder instead, with a log line saying so.
    """
    digest = weights_digest(model)
    # the graph is exported at the model's input size: another size is another graph
    _, height, width = (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))
    name = f"{digest[:32]}-{head_classes(model)}classes-{height}x{width}-opset{opset}.onnx"
    path = cache_root() / ONNX / name
    if _cached(path, digest):
        return path
    with _export_lock(path):
        if _cached(path, digest):  # another process exported it while this one waited
            return path
        _logger.info("exporting the model to ONNX: %s", path)
        program, has_head = _export(model, opset, "float32")
        meta = _sidecar(model, opset, "float32", has_head, digest)
        try:
            return _save(program, path, meta)
        except OSError as exc:
            fallback = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX)) / name
            _logger.warning("cannot write the ONNX cache %s (%s); using %s instead",
                            path.parent, exc, fallback)
            return _save(program, fallback, meta)
