"""timm ResNet18 backbones for FroSSL (the projector head is ``frossl_hub.projector``).

Importing this module registers one timm architecture per stem (``frossl_hub.stems``):

- ``frossl_resnet18``: timm's ``resnet18`` (7x7 stride-2 stem + max-pool), for 64-224 px data.
- ``frossl_resnet18_nopool``: timm's 7x7 stride-2 ``conv1``, no max-pool.
- ``frossl_resnet18_s2``: a 3x3 stride-2 ``conv1``, no max-pool.
- ``frossl_resnet18_s1pool``: a 3x3 stride-1 ``conv1`` + max-pool.
- ``frossl_resnet18_cifar``: a 3x3 stride-1 ``conv1`` and no max-pool, for 28-32 px data.

All keep timm's state-dict keys (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``), and
each catalog entry becomes a pretrained tag (``frossl_resnet18_cifar.cifar10``), so
``timm.create_model("frossl_resnet18_cifar.cifar10", pretrained=True)`` works.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

from .catalog import CATALOG, CatalogEntry
from .specs import DatasetSpec, get_dataset_spec
from .stems import SMALL_STEM_ARCH, STANDARD_STEM_ARCH, STEMS, Stem, get_stem

__all__ = ["StemResNet", "SmallImageResNet", "create_backbone", "pretrained_cfg_for"]


class StemResNet(ResNet):
    """timm ResNet whose ``conv1`` and max-pool follow a ``Stem`` (keys stay timm's)."""

    def __init__(self, *args: Any, stem: Stem, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if stem == STEMS[STANDARD_STEM_ARCH]:
            return
        self.conv1 = nn.Conv2d(self.in_chans, 64, kernel_size=stem.kernel, stride=stem.stride,
                               padding=stem.kernel // 2, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        if not stem.max_pool:
            self.maxpool = nn.Identity()
        for info in self.feature_info:  # timm's reductions assume the standard stem (2, then 4)
            info["reduction"] = stem.stride if info["module"] == "act1" else info["reduction"] * stem.reduction // 4


class SmallImageResNet(StemResNet):
    """timm ResNet with the CIFAR stem: 3x3 stride-1 ``conv1``, no max-pool."""


def pretrained_cfg_for(spec: DatasetSpec, architecture: Optional[str] = None,
                       image_size: Optional[int] = None, **overrides: Any) -> Dict[str, Any]:
    """timm pretrained cfg of ``architecture`` trained on ``spec``'s data (at ``image_size``).

    ``architecture`` defaults to the stem the paper uses for the data set's image size.
    """
    size = image_size or spec.image_size
    architecture = architecture or (SMALL_STEM_ARCH if spec.small_images else STANDARD_STEM_ARCH)
    final = -(-size // (get_stem(architecture).reduction * 8))  # padded stride-2 layers round up
    cfg: Dict[str, Any] = dict(
        url="",
        num_classes=spec.num_classes,
        input_size=(spec.in_chans, size, size),
        pool_size=(final, final),
        crop_pct=1.0 if size <= 96 else 0.875,
        interpolation="bicubic" if size <= 96 else "bilinear",
        mean=spec.mean,
        std=spec.std,
        first_conv="conv1",
        classifier="fc",
        license="apache-2.0",
        label_names=list(spec.label_names) if spec.label_names else None,
        paper_ids="arXiv:2310.02903",
        paper_name="FroSSL: Frobenius Norm Minimization for Self-Supervised Learning",
        origin_url="https://github.com/OFSkean/FroSSL",
    )
    cfg.update(overrides)
    return cfg


def _catalog_cfg(entry: CatalogEntry) -> Dict[str, Any]:
    source: Dict[str, Any] = dict(hf_hub_id=entry.hf_hub_id)
    if entry.bundled:
        source = dict(file=str(entry.bundled_path / entry.filename))
    elif not entry.has_weights:
        source = dict(hf_hub_id=None)  # nothing to load until the model is trained
    return pretrained_cfg_for(entry.spec, entry.architecture, entry.input_side, **source)


def _default_cfgs() -> Dict[str, Any]:
    # untagged defaults: random init with the input spec of the data each stem suits
    cfgs: Dict[str, Dict[str, Any]] = {
        arch: pretrained_cfg_for(get_dataset_spec("imagenet" if arch == STANDARD_STEM_ARCH else "cifar10"), arch)
        for arch in STEMS
    }
    for entry in CATALOG.values():
        cfgs[entry.timm_name] = _catalog_cfg(entry)
    return generate_default_cfgs(cfgs)


default_cfgs = _default_cfgs()  # read by timm's @register_model


def _create(variant: str, pretrained: bool, **kwargs: Any) -> ResNet:
    model_cls = SmallImageResNet if variant == SMALL_STEM_ARCH else StemResNet
    model_args = dict(block=BasicBlock, layers=(2, 2, 2, 2), stem=get_stem(variant))
    return build_model_with_cfg(model_cls, variant, pretrained, **dict(model_args, **kwargs))


@register_model
def frossl_resnet18(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet18 with timm's standard stem (7x7 stride-2 conv1 + max-pool)."""
    return _create("frossl_resnet18", pretrained, **kwargs)


@register_model
def frossl_resnet18_nopool(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet18 with timm's 7x7 stride-2 conv1 and no max-pool (downsamples by 2 before layer1)."""
    return _create("frossl_resnet18_nopool", pretrained, **kwargs)


@register_model
def frossl_resnet18_s2(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet18 with a 3x3 stride-2 conv1 and no max-pool (downsamples by 2 before layer1)."""
    return _create("frossl_resnet18_s2", pretrained, **kwargs)


@register_model
def frossl_resnet18_s1pool(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet18 with a 3x3 stride-1 conv1 and the max-pool (downsamples by 2 before layer1)."""
    return _create("frossl_resnet18_s1pool", pretrained, **kwargs)


@register_model
def frossl_resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet18 with the small-image stem (3x3 stride-1 conv1, no max-pool)."""
    return _create("frossl_resnet18_cifar", pretrained, **kwargs)


def create_backbone(architecture: str, in_chans: int = 3, num_classes: int = 0, **kwargs: Any) -> ResNet:
    """Random-init backbone by timm name (``num_classes=0``: pooled 512-d features)."""
    import timm

    return timm.create_model(architecture, pretrained=False, in_chans=in_chans,
                             num_classes=num_classes, **kwargs)
