"""Folders written by timm's own ``save_for_hf`` load everywhere: frossl_hub.load, timm's
``local-dir:`` loader, ``python -m frossl_hub embed`` and ``python -m serve --model``.

timm records ``num_classes`` and ``global_pool`` in ``model_args`` of config.json; like timm,
the caller's arguments win over them.
"""
from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import timm
import torch
from PIL import Image

import frossl_hub
from frossl_hub.cli import main as hub_cli
from frossl_hub.models import pretrained_cfg_for
from helpers import one_torch_thread  # noqa: F401  (fixture)
from serve_helpers import serving

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def timm_model() -> torch.nn.Module:
    torch.manual_seed(3)
    spec = frossl_hub.get_dataset_spec("cifar10")
    return timm.create_model("frossl_resnet18_cifar", num_classes=10,
                             pretrained_cfg_overlay=pretrained_cfg_for(spec)).eval()


@pytest.fixture(scope="module")
def timm_dir(timm_model, tmp_path_factory) -> Path:
    """What timm.models.save_for_hf (and so push_to_hf_hub) writes: safetensors + config.json."""
    folder = tmp_path_factory.mktemp("timm") / "saved"
    timm.models.save_for_hf(timm_model, str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("timm-images")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_timm_records_the_head_in_model_args(timm_dir):
    import json

    model_args = json.loads((timm_dir / "config.json").read_text())["model_args"]
    assert model_args["num_classes"] == 10 and model_args["global_pool"] == "avg"


def test_frossl_hub_load_gives_the_saved_model(timm_dir, timm_model):
    model = frossl_hub.load(timm_dir)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), timm_model(x))


def test_the_callers_num_classes_wins_over_model_args(timm_dir):
    encoder = frossl_hub.load(timm_dir, num_classes=0)
    assert encoder.num_classes == 0
    with torch.inference_mode():
        assert encoder(torch.randn(1, 3, 32, 32)).shape == (1, 512)


def test_the_callers_global_pool_wins_over_model_args(timm_dir):
    assert frossl_hub.load(timm_dir, global_pool="max").global_pool.pool_type == "max"


def test_timm_local_dir_loads_it(timm_dir, timm_model):
    model = timm.create_model(f"local-dir:{timm_dir}", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), timm_model(x))


def test_embed_cli_embeds_with_it(timm_dir, images, tmp_path):
    out = tmp_path / "emb.npy"
    assert hub_cli(["embed", str(images), "--model", str(timm_dir), "--out", str(out),
                    "--workers", "0", "--no-progress"]) == 0
    expected = frossl_hub.embed(frossl_hub.load(timm_dir, num_classes=0),
                                sorted(images.glob("*.png")))
    np.testing.assert_allclose(np.load(out), expected.numpy(), atol=1e-4)


@pytest.mark.slow
def test_python_m_serve_serves_it(timm_dir, images, tmp_path):
    blob = (images / "0.png").read_bytes()
    with serving(["--model", str(timm_dir)], tmp_path / "server.log") as url:
        response = httpx.post(url + "/v1/predictions", files=[("file", ("0.png", blob))],
                              timeout=60)
    assert response.status_code == 200, response.text
    assert len(response.json()["data"][0]["predictions"]) == 5
