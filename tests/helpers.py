"""Shared test helpers: publish a real (randomly initialised) model folder in seconds.

Import from tests as ``from helpers import publish_tiny_model`` (pytest puts ``tests/`` on
``sys.path``). The folder is exactly what ``python -m train.publish`` writes, minus plots:
``model.safetensors``, ``config.json``, ``README.md`` and ``SHA256SUMS``.

``one_torch_thread`` is a module-scoped fixture: on a shared 2-core box, torch's OpenMP
threads spin against other jobs and make small CPU forwards several times slower. Use it with
``from helpers import one_torch_thread`` and
``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Union

import pytest
import torch

__all__ = ["publish_tiny_model", "one_torch_thread"]


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a test module's CPU forwards on one torch thread, then restore the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def publish_tiny_model(
    folder: Union[str, Path],
    dataset: str = "cifar10",
    arch: Optional[str] = None,
    dtype: str = "float32",
    seed: int = 0,
    num_classes: Optional[int] = None,
) -> Path:
    """Publish a random-init FroSSL ResNet18 with ``dataset``'s input spec into ``folder``.

    Args:
        folder: target folder (must be missing or empty).
        dataset: data set whose input spec, labels and class count the model gets.
        arch: timm architecture; default ``frossl_resnet18_cifar`` for 28-32 px data, else ``frossl_resnet18``.
        dtype: stored precision: float32, float16 or bfloat16.
        seed: torch seed for the weights, so two calls with one seed publish equal weights.
        num_classes: head size; default the data set's class count (0: no head).
    """
    import timm

    import frossl_hub
    from frossl_hub.catalog import SMALL_STEM_ARCH, STANDARD_STEM_ARCH
    from frossl_hub.hub import model_config, save_pretrained
    from frossl_hub.models import pretrained_cfg_for

    spec = frossl_hub.get_dataset_spec(dataset)
    arch = arch or (SMALL_STEM_ARCH if spec.small_images else STANDARD_STEM_ARCH)
    classes = spec.num_classes if num_classes is None else num_classes
    torch.manual_seed(seed)
    model = timm.create_model(arch, num_classes=classes, in_chans=spec.in_chans,
                              pretrained_cfg_overlay=pretrained_cfg_for(spec))
    with torch.no_grad():  # non-trivial BN statistics, so eval outputs depend on them
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    card = f"# Tiny test model ({arch}, {spec.title})\n\nRandom weights, for tests only.\n"
    return save_pretrained(model.state_dict(), folder, model_config(model), dtype=dtype,
                           extra_files={"README.md": card})
