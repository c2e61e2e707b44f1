"""Search your images over HTTP: GET /v1/indexes, POST /v1/search, GET /v1/indexes/{name}/items/{id}.

The service runs in-process (TestClient) on the bundled Fashion-MNIST model with an index of
real Fashion-MNIST PNGs; a second index is the same one with a path edited to point out of
its folder (checksums rewritten, as a hand-crafted index would be).
"""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import frossl_hub
from frossl_hub.index import BuildOptions, build_index
from frossl_hub.index.layout import PATHS, write_sums
from helpers import one_torch_thread  # noqa: F401  (fixture)
from index_helpers import MODEL, copy_index, fashion_folder
from serve.app import create_app
from serve.config import IndexSpec, ModelSpec, Settings
from serve_helpers import assert_error, run_cli, sample

N = 24
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """An index of ``root/`` (N images and a symlink to a file outside ``root``)."""
    base = tmp_path_factory.mktemp("search")
    root = fashion_folder(base / "root", N)
    fashion_folder(base / "outside", 1, start=900)
    os.symlink(base / "outside" / "b" / "00900.png", root / "zz-link.png")
    idx = base / "idx"
    build_index(root, MODEL, idx, BuildOptions(workers=0, progress=False))
    return idx


@pytest.fixture(scope="module")
def crafted(built, tmp_path_factory) -> Path:
    idx = copy_index(built, tmp_path_factory.mktemp("crafted") / "crafted")
    gen = idx / "g000001"
    paths = (gen / PATHS).read_text().splitlines()
    paths[0] = "../outside/b/00900.png"
    (gen / PATHS).write_text("\n".join(paths) + "\n")
    write_sums(gen)
    return idx


@pytest.fixture(scope="module")
def client(built, crafted) -> Iterator[TestClient]:
    settings = Settings(models=(ModelSpec(MODEL, MODEL),), threads=1,
                        indexes=(IndexSpec("fm", str(built)), IndexSpec("crafted", str(crafted))))
    with TestClient(create_app(settings, {MODEL: frossl_hub.load(MODEL)})) as test_client:
        response = test_client.get("/healthz")
        for _ in range(600):
            if response.status_code == 200:
                break
            import time
            time.sleep(0.1)
            response = test_client.get("/healthz")
        assert response.status_code == 200, response.text
        yield test_client


def stored(built: Path, name: str) -> bytes:
    root = Path(frossl_hub.index.open_index(built).manifest.root)
    return (root / name).read_bytes()


def post(client, blob: bytes, **fields) -> object:
    return client.post("/v1/search", files=[("file", ("q.png", blob, "image/png"))],
                       data={k: str(v) for k, v in fields.items()})


def test_indexes_are_listed(client):
    body = client.get("/v1/indexes").json()
    assert [i["name"] for i in body["data"]] == ["fm", "crafted"]
    assert body["data"][0]["count"] == N + 1 and body["data"][0]["model"] == MODEL


def test_search_finds_the_stored_image_first(client, built):
    response = post(client, stored(built, "a/00003.png"), index="fm", k=4)
    assert response.status_code == 200, response.text
    body = response.json()
    hits = body["data"][0]["hits"]
    assert body["index"] == "fm" and body["model"] == MODEL and len(hits) == 4
    assert hits[0]["path"] == "a/00003.png" and hits[0]["score"] == pytest.approx(1, abs=1e-2)
    assert hits[0]["url"] == f"/v1/indexes/fm/items/{hits[0]['id']}"


def test_a_hit_url_returns_the_stored_file(client, built):
    hit = post(client, stored(built, "b/00006.png"), k=1).json()["data"][0]["hits"][0]
    item = client.get(hit["url"])
    assert item.status_code == 200 and item.headers["content-type"] == "image/png"
    assert item.content == stored(built, "b/00006.png")


def test_json_search_with_base64_images(client, built):
    images = [base64.b64encode(stored(built, n)).decode() for n in ("a/00001.png", "b/00002.png")]
    response = client.post("/v1/search", json={"images": images, "k": 2})
    assert response.status_code == 200, response.text
    assert [d["hits"][0]["path"] for d in response.json()["data"]] == ["a/00001.png", "b/00002.png"]


def test_a_query_of_another_size_and_mode_is_handled_like_embeddings(client, built):
    image = Image.open(io.BytesIO(stored(built, "a/00005.png"))).convert("RGB").resize((90, 70))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    hits = post(client, buffer.getvalue(), k=1).json()["data"][0]["hits"]
    assert hits[0]["path"] == "a/00005.png"


@pytest.mark.parametrize("k", [0, -1])
def test_k_of_zero_or_less_is_422(client, built, k):
    assert_error(post(client, stored(built, "a/00001.png"), k=k), 422, "invalid_request")


def test_k_over_the_index_size_is_422(client, built):
    error = assert_error(post(client, stored(built, "a/00001.png"), k=N + 2), 422, "invalid_request")
    assert f"1..{N + 1}" in error["message"]


def test_an_unknown_index_is_404(client, built):
    assert_error(post(client, stored(built, "a/00001.png"), index="nope"), 404, "index_not_found")


def test_a_corrupt_query_image_is_422(client):
    assert_error(post(client, b"\x89PNG\r\n\x1a\n broken"), 422, "corrupt_image")


@pytest.mark.parametrize("item", ["25", "-1", "999999", "3x", "%2E%2E"])
def test_item_ids_out_of_range_are_404(client, item):
    assert_error(client.get(f"/v1/indexes/fm/items/{item}"), 404, "item_not_found")


def test_a_symlink_out_of_the_root_is_404(client):
    paths = frossl_hub.index.open_index(Path(client.app.state.indexes.handles["fm"].index.folder)).paths
    assert paths[-1] == "zz-link.png"
    assert_error(client.get(f"/v1/indexes/fm/items/{len(paths) - 1}"), 404, "item_not_found")


def test_a_path_leading_out_of_the_root_is_404(client):
    assert_error(client.get("/v1/indexes/crafted/items/0"), 404, "item_not_found")
    assert client.get("/v1/indexes/crafted/items/1").status_code == 200


def test_path_traversal_in_the_url_is_404(client):
    for url in ("/v1/indexes/fm/items/..%2F..%2Fetc%2Fpasswd", "/v1/indexes/..%2Ffm/items/0"):
        response = client.get(url)
        assert response.status_code == 404 and b"root:" not in response.content


def test_metrics_count_searches_and_latency_per_index(client, built):
    before = sample(client.get("/metrics").text, "frossl_searches_total", index="fm")
    post(client, stored(built, "a/00001.png"), k=1)
    text = client.get("/metrics").text
    assert sample(text, "frossl_searches_total", index="fm") == before + 1
    assert sample(text, "frossl_search_duration_seconds_count", index="fm") >= 1


def test_healthz_is_not_ready_before_the_index_is_loaded(built):
    settings = Settings(models=(ModelSpec(MODEL, MODEL),), threads=1,
                        indexes=(IndexSpec("fm", str(built)),))
    app = create_app(settings, {MODEL: frossl_hub.load(MODEL)})
    app.state.registry.start()  # the models, but not the indexes: as while they load
    try:
        assert_error(TestClient(app).get("/healthz"), 503, "indexes_loading")
    finally:
        app.state.registry.close()


def test_the_service_refuses_an_index_of_a_model_it_does_not_serve(built):
    proc = run_cli("--index", str(built), "--model", "frossl-resnet18-cifar10")
    assert proc.returncode == 2 and "which this service does not serve" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_service_refuses_a_corrupt_index(built, tmp_path):
    bad = copy_index(built, tmp_path / "bad")
    (bad / "g000001" / "faiss.index").write_bytes(b"edited")
    proc = run_cli("--index", str(bad), "--model", MODEL)
    assert proc.returncode == 2 and "faiss.index does not match its checksum" in proc.stderr
