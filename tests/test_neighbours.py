"""POST /v1/neighbours and GET /v1/models/{name}/card: the gallery and card behind the demo page.

The service runs in-process (TestClient) on the bundled CIFAR-10 model, whose gallery of
400 real test images is embedded at start-up, next to a random-weight model without one.
"""
from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import frossl_hub
from frossl_hub.catalog import CATALOG
from frossl_hub.gallery import GALLERY_NAME, read_gallery
from helpers import publish_tiny_model
from serve.app import create_app
from serve.config import ModelSpec, Settings
from train.gallery import attach_gallery

REPO = Path(__file__).resolve().parents[1]
BUNDLED = "frossl-resnet18-cifar10"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
API_KEY = "neighbours-test-key"


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def decode_data_url(url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))


@pytest.fixture(scope="module")
def gallery():
    return read_gallery(CATALOG[BUNDLED].bundled_path)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The bundled CIFAR-10 model (default, with a gallery) and `plain` (no gallery), loaded
    here: the service embeds the gallery of preloaded models before it starts."""
    plain = publish_tiny_model(tmp_path_factory.mktemp("neighbours") / "plain")
    settings = Settings(models=(ModelSpec(BUNDLED, BUNDLED), ModelSpec("plain", str(plain))),
                        threads=1)
    models = {BUNDLED: frossl_hub.load(BUNDLED), "plain": frossl_hub.load(plain)}
    with TestClient(create_app(settings, models)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def small_gallery_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Fashion-MNIST model with a gallery of 10 real test images."""
    if not FASHION_MNIST.is_dir():
        pytest.skip(f"Fashion-MNIST absent ({FASHION_MNIST})")
    folder = publish_tiny_model(tmp_path_factory.mktemp("small") / "fmnist", dataset="fashion-mnist")
    attach_gallery(folder, 10, dataset="fashion-mnist")
    return folder


def neighbours(client: TestClient, blob: bytes, **fields: Any) -> Any:
    return client.post("/v1/neighbours", files=[("file", ("x.png", blob, "image/png"))],
                       data={k: str(v) for k, v in fields.items()})


def error_of(response: Any, status: int, code: str) -> Dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
    return response.json()["error"]


# ---------------------------------------------------------------------------------------------
# neighbours


def test_a_gallery_image_is_its_own_nearest_neighbour(client, gallery) -> None:
    i = 123
    response = neighbours(client, png(gallery.images[i].permute(1, 2, 0).numpy()))
    assert response.status_code == 200, response.text
    first = response.json()["data"][0]["neighbours"][0]
    assert first["index"] == i and first["similarity"] > 0.9999
    assert first["label"] == gallery.label_names[int(gallery.labels[i])]
    assert first["class_id"] == int(gallery.labels[i])


def test_neighbours_default_to_eight_most_similar_with_their_pngs(client, gallery) -> None:
    rng = np.random.default_rng(0)
    body = neighbours(client, png(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))).json()
    assert body["model"] == BUNDLED
    assert body["gallery"] == {"size": 400, "dataset": "cifar10", "split": "test"}
    items = body["data"][0]["neighbours"]
    assert len(items) == 8
    similarities = [n["similarity"] for n in items]
    assert similarities == sorted(similarities, reverse=True) and -1 <= similarities[-1] <= 1
    for n in items:
        shown = np.asarray(decode_data_url(n["image"]).convert("RGB"))
        assert np.array_equal(shown, gallery.images[n["index"]].permute(1, 2, 0).numpy())


def test_neighbours_show_the_image_as_the_model_sees_it(client) -> None:
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    body = neighbours(client, png(np.asarray(image)), k=1).json()
    view = decode_data_url(body["data"][0]["input_image"])
    model = frossl_hub.load(BUNDLED)
    cfg = model.pretrained_cfg
    expected = frossl_hub.get_transform(model)(image)
    expected = expected * torch.tensor(cfg["std"]).view(3, 1, 1) + torch.tensor(cfg["mean"]).view(3, 1, 1)
    expected = (expected.clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    assert view.size == (32, 32) and view.mode == "RGB"
    assert np.abs(np.asarray(view).astype(float) - expected).max() <= 1


def test_neighbours_take_json_base64_and_k(client, gallery) -> None:
    blob = png(gallery.images[5].permute(1, 2, 0).numpy())
    response = client.post("/v1/neighbours", json={"images": [base64.b64encode(blob).decode()] * 2,
                                                   "k": 3})
    data = response.json()["data"]
    assert [d["index"] for d in data] == [0, 1]
    assert [len(d["neighbours"]) for d in data] == [3, 3]
    assert data[0]["neighbours"][0]["index"] == 5


@pytest.mark.parametrize("k", [0, 401])
def test_k_outside_the_gallery_is_refused(client, k: int) -> None:
    error = error_of(neighbours(client, png(np.zeros((32, 32, 3), np.uint8)), k=k),
                     422, "invalid_request")
    assert "k:" in error["message"]


def test_a_model_without_a_gallery_answers_no_gallery(client) -> None:
    error = error_of(neighbours(client, png(np.zeros((32, 32, 3), np.uint8)), model="plain"),
                     422, "no_gallery")
    assert "--gallery N" in error["message"]


def test_neighbours_of_a_non_image_name_the_problem(client) -> None:
    response = client.post("/v1/neighbours", files=[("file", ("notes.txt", b"hello", "text/plain"))])
    assert "is not an image" in error_of(response, 415, "unsupported_image")["message"]


def test_neighbours_need_the_api_key_like_every_v1_route(small_gallery_folder) -> None:
    settings = Settings(models=(ModelSpec("small", str(small_gallery_folder)),), api_key=API_KEY,
                        threads=1)
    blob = png(np.zeros((28, 28), np.uint8))
    models = {"small": frossl_hub.load(small_gallery_folder)}
    with TestClient(create_app(settings, models)) as keyed:
        error_of(neighbours(keyed, blob), 401, "unauthorized")
        error_of(keyed.get("/v1/models/small/card"), 401, "unauthorized")
        answer = keyed.post("/v1/neighbours", files=[("file", ("x.png", blob, "image/png"))],
                            headers={"Authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 200, answer.text
    view = decode_data_url(answer.json()["data"][0]["input_image"])
    assert view.size == (28, 28) and view.mode == "L"  # greyscale model


# ---------------------------------------------------------------------------------------------
# a gallery that does not match SHA256SUMS


@pytest.fixture
def tampered_folder(small_gallery_folder: Path, tmp_path: Path) -> Path:
    folder = Path(shutil.copytree(small_gallery_folder, tmp_path / "tampered"))
    data = bytearray((folder / GALLERY_NAME).read_bytes())
    data[-1] ^= 0xFF
    (folder / GALLERY_NAME).write_bytes(bytes(data))
    return folder


def test_a_tampered_gallery_fails_the_model_load(tampered_folder) -> None:
    settings = Settings(models=(ModelSpec("bad", str(tampered_folder)),), threads=1)
    with TestClient(create_app(settings)) as bad:  # loads in the background
        health = bad.get("/healthz")
        while health.json()["error"]["code"] == "models_loading":
            time.sleep(0.05)
            health = bad.get("/healthz")
    assert "ChecksumError" in error_of(health, 503, "model_load_failed")["message"]


def test_serve_refuses_to_start_on_a_tampered_gallery(tampered_folder) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "serve", "--model", str(tampered_folder),
                             "--port", "0"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "gallery.safetensors does not match" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# the card summary and plots


def test_card_gives_the_headline_numbers_hardware_plots_and_gallery(client) -> None:
    card = client.get(f"/v1/models/{BUNDLED}/card").json()
    metrics = CATALOG[BUNDLED].metrics
    for key in ("linear_top1", "knn_top1", "random_init_linear_top1", "train_minutes"):
        assert card["metrics"][key] == metrics[key]
    assert card["hardware"] == "AMD EPYC, 2 threads"
    assert [p["name"] for p in card["plots"]] == ["accuracy", "loss", "spectrum"]
    assert card["gallery"]["size"] == 400


def test_card_plots_are_served_as_png(client) -> None:
    url = client.get(f"/v1/models/{BUNDLED}/card").json()["plots"][0]["url"]
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == (CATALOG[BUNDLED].bundled_path / "plots" / "accuracy.png").read_bytes()


@pytest.mark.parametrize("name", ["nope.png", "..%2Fconfig.json", "README.md"])
def test_only_the_folder_plots_are_served(client, name: str) -> None:
    response = client.get(f"/v1/models/{BUNDLED}/plots/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] in ("plot_not_found", "not_found")


def test_a_model_published_without_plots_or_gallery_has_a_bare_card(client) -> None:
    card = client.get("/v1/models/plain/card").json()
    assert card["plots"] == [] and card["gallery"] is None and card["hardware"] is None
