"""Inference backends: one forward pass (pooled embedding + probe logits) by PyTorch or ONNX Runtime.

``make_runner(model, backend)`` returns a ``Runner``: a callable from a preprocessed
(N, C, H, W) float32 batch to ``(embeddings (N, D), logits (N, K))`` as float32 CPU tensors
(K = 0 for an embedding-only model), whatever runs it. ``auto`` picks ONNX Runtime for a model
on the CPU (measured 2-3x faster than eager PyTorch there, see benchmarks/RESULTS.md) and
PyTorch on CUDA.
"""
from __future__ import annotations

import logging
import os
import shutil
import weakref
from typing import Any, Dict, Optional, Tuple

import torch

from .heads import head_classes

__all__ = ["BACKENDS", "Runner", "available_cores", "head_classes", "make_runner", "resolve_backend"]

_logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime")
Outputs = Tuple[torch.Tensor, torch.Tensor]


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """``torch`` or ``onnxruntime`` for ``backend`` on ``device`` (``auto``: ORT on the CPU)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "onnxruntime" if device.type == "cpu" and _has_onnxruntime() else "torch"
    if backend == "onnxruntime" and not _has_onnxruntime():
        raise ValueError("backend 'onnxruntime' needs the onnxruntime package "
                         "(pip install onnxruntime), or use --backend torch.")
    return backend


class Runner:
    """A model's forward pass on one backend: (N, C, H, W) float32 -> (embeddings, logits)."""

    backend = "?"
    device = "cpu"

    def __call__(self, batch: torch.Tensor) -> Outputs:
        raise NotImplementedError


class TorchRunner(Runner):
    """Eager PyTorch: one backbone pass, the head applied to its pooled features."""

    backend = "torch"

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model  # the caller puts it in eval mode
        param = next(model.parameters())
        self.param_device, self.dtype = param.device, param.dtype
        self.device = str(param.device)
        self.has_head = head_classes(model) > 0

    def __call__(self, batch: torch.Tensor) -> Outputs:
        model = self.model
        with torch.inference_mode():
            x = batch.to(self.param_device, self.dtype, non_blocking=True)
            features = model.forward_head(model.forward_features(x), pre_logits=True)
            if self.has_head:
                logits = model.get_classifier()(features).float().cpu()
            else:
                logits = torch.empty(x.shape[0], 0)
            return features.float().cpu(), logits


def _session_options(threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle pool threads sleep instead of spinning, leaving the cores to image decoding
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return options


class OrtRunner(Runner):
    """ONNX Runtime on the model's exported graph (``frossl_hub.onnx_export.cached_onnx``)."""

    backend = "onnxruntime"

    def __init__(self, model: torch.nn.Module, threads: Optional[int] = None) -> None:
        import onnxruntime as ort

        from .onnx_export import TEMP_PREFIX, cached_onnx

        self.threads = threads or available_cores()
        path = cached_onnx(model)
        providers = ["CPUExecutionProvider"]
        if next(model.parameters()).is_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), _session_options(self.threads),
                                            providers=providers)
        if path.parent.name.startswith(TEMP_PREFIX):  # a fallback outside the cache: loaded now
            shutil.rmtree(path.parent, ignore_errors=True)
        self.device = "cuda" if self.session.get_providers()[0].startswith("CUDA") else "cpu"
        self.input_name = self.session.get_inputs()[0].name
        self.has_head = len(self.session.get_outputs()) > 1

    def __call__(self, batch: torch.Tensor) -> Outputs:
        x = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        outputs = self.session.run(None, {self.input_name: x})
        features = torch.from_numpy(outputs[0])
        logits = torch.from_numpy(outputs[1]) if self.has_head else torch.empty(x.shape[0], 0)
        return features, logits


# one runner per (model, threads, input size) while the model's tensors are unchanged
_RUNNERS: "weakref.WeakKeyDictionary[torch.nn.Module, Dict[Any, Runner]]" = weakref.WeakKeyDictionary()


def _tensor_versions(model: torch.nn.Module) -> Tuple[Any, ...]:
    """Changes whenever a parameter or buffer is replaced or modified in place."""
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in model.state_dict().values())


def make_runner(model: torch.nn.Module, backend: str = "auto", threads: Optional[int] = None
                ) -> Runner:
    """The forward pass of ``model`` on ``backend`` (auto, torch, onnxruntime).

    ORT runners are reused while the model's tensors stay the same, so repeated calls (of
    ``frossl_hub.embed``, say) do not export or open a session again.

    Args:
        model: a loaded timm model, on its device.
        backend: ``auto`` (ORT on the CPU, PyTorch on CUDA), ``torch`` or ``onnxruntime``.
        threads: ORT intra-op threads; default the CPU cores this process may use.
    """
    device = next(model.parameters()).device
    name = resolve_backend(backend, device)
    if name == "torch":
        return TorchRunner(model)
    runners = _RUNNERS.setdefault(model, {})
    input_size = tuple((getattr(model, "pretrained_cfg", None) or {}).get("input_size", ()))
    key = (threads, input_size, _tensor_versions(model))  # another size is another graph
    if key not in runners:
        runners.clear()  # an older runner holds stale weights
        runners[key] = OrtRunner(model, threads)
    return runners[key]
