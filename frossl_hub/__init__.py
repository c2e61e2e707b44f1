"""frossl-hub: get, retrain and serve FroSSL-pretrained ResNet18 backbones.

``import frossl_hub`` is light: it imports neither torch nor timm, so tools that only need
a helper (``frossl_hub._io``) start fast. The public names below load their module on first
use (PEP 562). The timm architectures ``frossl_resnet18``, ``frossl_resnet18_cifar``, ...
(and their pretrained tags) are registered as soon as timm is imported, before or after
this package, so ``timm.create_model("frossl_resnet18_cifar")`` works after
``import frossl_hub`` as it always did.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any, Dict, List

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: Dict[str, str] = {
    "CATALOG": "catalog",
    "CatalogEntry": "catalog",
    "get_entry": "catalog",
    "list_models": "catalog",
    "ChecksumError": "hub",
    "ModelNotFoundError": "hub",
    "ResolvedModel": "hub",
    "load": "hub",
    "model_config": "hub",
    "push_to_hub": "hub",
    "resolve": "hub",
    "save_pretrained": "hub",
    "verify": "hub",
    "embed": "inference",
    "ImageReadError": "inference",
    "export_onnx": "onnx_export",
    "get_transform": "inference",
    "BarlowTwinsLoss": "losses",
    "FroSSLLoss": "losses",
    "SimCLRLoss": "losses",
    "VICRegLoss": "losses",
    "frossl_loss": "losses",
    "Projector": "projector",
    "create_backbone": "models",
    "DATASET_SPECS": "specs",
    "get_dataset_spec": "specs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _RegisterAfterTimm(importlib.abc.MetaPathFinder):
    """Registers frossl-hub's architectures right after the first ``import timm``."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)  # one shot; find the real spec without this finder
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module: Any) -> None:
            exec_module(module)
            importlib.import_module(".models", __name__)

        spec.loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


if "timm" in sys.modules:  # timm already paid for: register now
    importlib.import_module(".models", __name__)
elif not any(isinstance(f, _RegisterAfterTimm) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTimm())
