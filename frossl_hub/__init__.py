"""frossl-hub: get, retrain and serve FroSSL-pretrained ResNet18 backbones.

Importing the package registers the timm architectures ``frossl_resnet18`` and
``frossl_resnet18_cifar`` (and their pretrained tags); nothing else runs at import.
"""
from . import models as _models  # noqa: F401  (registers the timm architectures)
from .catalog import CATALOG, get_entry, list_models
from .hub import ChecksumError, ModelNotFoundError, load, push_to_hub, resolve, save_pretrained, verify
from .inference import embed, get_transform
from .loss import FroSSLLoss, frossl_loss
from .onnx_export import export_onnx
from .models import Projector, create_backbone
from .specs import DATASET_SPECS, get_dataset_spec

__version__ = "0.1.0"

__all__ = [
    "CATALOG",
    "ChecksumError",
    "ModelNotFoundError",
    "DATASET_SPECS",
    "FroSSLLoss",
    "Projector",
    "create_backbone",
    "embed",
    "export_onnx",
    "get_transform",
    "load",
    "push_to_hub",
    "resolve",
    "save_pretrained",
    "verify",
    "frossl_loss",
    "get_dataset_spec",
    "get_entry",
    "list_models",
]
