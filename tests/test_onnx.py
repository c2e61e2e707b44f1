"""ONNX export (``frossl_hub.export_onnx``, ``python -m frossl_hub export``), the export cache,
and the ONNX Runtime backend, checked against PyTorch on real images of the bundled models."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

import frossl_hub
from frossl_hub._io import sha256_file
from frossl_hub.backends import make_runner, resolve_backend
from frossl_hub.catalog import CATALOG
from frossl_hub.cli import main as hub_cli
from frossl_hub.inference import BatchTransform
from frossl_hub.onnx_export import cached_onnx, sidecar_path
from helpers import one_torch_thread, publish_tiny_model  # noqa: F401  (fixture)
from test_bundled import SUBSETS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ATOL = 1e-4  # ORT vs PyTorch, absolute, on embeddings and logits


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def torch_outputs(model: torch.nn.Module, x: torch.Tensor):
    with torch.inference_mode():
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        return features.numpy(), model.get_classifier()(features).numpy()


@pytest.fixture(scope="module")
def cifar10_onnx(tmp_path_factory) -> Path:
    """The bundled CIFAR-10 model exported through the command line."""
    out = tmp_path_factory.mktemp("onnx") / "c10.onnx"
    assert hub_cli(["export", "frossl-resnet18-cifar10", "--format", "onnx", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return publish_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.mark.parametrize("name", ["frossl-resnet18-cifar10", "frossl-resnet18-fashion-mnist",
                                  "frossl-resnet18-tiny-imagenet"])
def test_onnx_runtime_equals_pytorch_on_real_images(name, cifar10_onnx, tmp_path):
    model = frossl_hub.load(name)
    path = cifar10_onnx if "cifar10" in name else frossl_hub.export_onnx(model, tmp_path / "m.onnx")
    subset = SUBSETS[CATALOG[name].dataset](tmp_path)
    x = BatchTransform(model)([image for image, _ in subset])
    embedding, logits = session(path).run(["embedding", "logits"], {"input": x.numpy()})
    ref_embedding, ref_logits = torch_outputs(model, x)
    np.testing.assert_allclose(embedding, ref_embedding, atol=ATOL, rtol=0)
    np.testing.assert_allclose(logits, ref_logits, atol=ATOL, rtol=0)
    assert (logits.argmax(1) == ref_logits.argmax(1)).all()


def test_the_graph_has_a_dynamic_batch_axis(cifar10_onnx):
    graph = session(cifar10_onnx)
    assert graph.get_inputs()[0].shape[1:] == [3, 32, 32]
    assert not isinstance(graph.get_inputs()[0].shape[0], int)
    for n in (1, 5):
        embedding, logits = graph.run(None, {"input": np.zeros((n, 3, 32, 32), np.float32)})
        assert embedding.shape == (n, 512) and logits.shape == (n, 10)


def test_float16_weights_export_as_a_float32_graph(cifar10_onnx):
    assert CATALOG["frossl-resnet18-cifar10"].bundled  # stored as float16 (test_bundled checks)
    assert session(cifar10_onnx).get_inputs()[0].type == "tensor(float)"


def test_the_sidecar_records_the_source_sha256_and_preprocessing(cifar10_onnx):
    meta = json.loads(sidecar_path(cifar10_onnx).read_text())
    entry = CATALOG["frossl-resnet18-cifar10"]
    assert meta["source_sha256"] == entry.sha256 == sha256_file(entry.bundled_path / entry.filename)
    assert meta["outputs"] == ["embedding", "logits"] and meta["opset"] == 18
    assert meta["preprocessing"]["input_size"] == [3, 32, 32]
    assert meta["preprocessing"]["mean"] == list(entry.spec.mean)


def test_an_embedding_only_model_has_no_logits_output(tiny_dir, tmp_path):
    model = frossl_hub.load(tiny_dir, num_classes=0)
    graph = session(frossl_hub.export_onnx(model, tmp_path / "enc.onnx"))
    assert [o.name for o in graph.get_outputs()] == ["embedding"]


def test_float16_is_exported_when_asked(tiny_dir, tmp_path):
    model = frossl_hub.load(tiny_dir)
    graph = session(frossl_hub.export_onnx(model, tmp_path / "half.onnx", dtype="float16"))
    assert graph.get_inputs()[0].type == "tensor(float16)"
    x = torch.randn(2, 3, 32, 32)
    embedding, _ = graph.run(None, {"input": x.half().numpy()})
    np.testing.assert_allclose(embedding.astype(np.float32), torch_outputs(model, x)[0], atol=0.05)


def test_export_replaces_a_file_whole_and_leaves_no_temporary_files(tiny_dir, tmp_path):
    out = tmp_path / "enc.onnx"
    out.write_bytes(b"an older export")
    assert hub_cli(["export", str(tiny_dir), "--out", str(out), "--embedding-only"]) == 0
    assert session(out).get_outputs()[0].name == "embedding"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc.onnx", "enc.onnx.json"]


def test_an_opset_the_exporter_cannot_write_is_refused_clearly(tiny_dir, tmp_path, capsys):
    assert hub_cli(["export", str(tiny_dir), "--out", str(tmp_path / "x.onnx"), "--opset", "11"]) == 2
    assert "use --opset 18 or newer" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


# --- the cache and the backend ------------------------------------------------------------------


def test_the_cache_exports_once_per_weights(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FROSSL_HUB_CACHE", str(tmp_path / "cache"))
    model = frossl_hub.load(tiny_dir)
    first = cached_onnx(model)
    stamp = first.stat().st_mtime_ns
    assert cached_onnx(frossl_hub.load(tiny_dir)) == first and first.stat().st_mtime_ns == stamp
    assert first.parent == tmp_path / "cache" / "onnx"
    with torch.no_grad():
        model.fc.bias.add_(1.0)  # other weights: another graph
    assert cached_onnx(model) != first


def test_the_cache_exports_again_for_another_input_size(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FROSSL_HUB_CACHE", str(tmp_path / "cache"))
    model = frossl_hub.load(tiny_dir, num_classes=0)
    first = cached_onnx(model)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 40, 40)}  # the same weights
    assert cached_onnx(model) != first
    x = torch.randn(2, 3, 40, 40)
    np.testing.assert_allclose(make_runner(model, "onnxruntime")(x)[0].numpy(), torch_outputs(model, x)[0],
                               atol=ATOL)


def test_an_unwritable_cache_falls_back_to_a_temporary_file(tiny_dir, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("FROSSL_HUB_CACHE", str(blocker / "cache"))
    model = frossl_hub.load(tiny_dir, num_classes=0)
    with caplog.at_level(logging.WARNING, logger="frossl_hub.onnx_export"):
        runner = make_runner(model, "onnxruntime")
    assert "cannot write the ONNX cache" in caplog.text
    x = torch.randn(3, 3, 32, 32)
    np.testing.assert_allclose(runner(x)[0].numpy(), torch_outputs(model, x)[0], atol=ATOL)


def test_auto_is_onnx_runtime_on_cpu_and_pytorch_on_cuda():
    assert resolve_backend("auto", torch.device("cpu")) == "onnxruntime"
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="backend must be one of auto, torch, onnxruntime"):
        resolve_backend("tensorrt", torch.device("cpu"))


def test_embed_gives_the_same_rows_on_both_backends(tiny_dir):
    model = frossl_hub.load(tiny_dir, num_classes=0)
    rng = np.random.default_rng(0)
    pil = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    on_ort = frossl_hub.embed(model, pil, backend="onnxruntime")
    on_torch = frossl_hub.embed(model, pil, backend="torch")
    torch.testing.assert_close(on_ort, on_torch, atol=ATOL, rtol=0)


def test_the_runner_follows_a_change_of_input_size(tiny_dir):
    model = frossl_hub.load(tiny_dir, num_classes=0)
    make_runner(model, "onnxruntime")(torch.randn(1, 3, 32, 32))  # a runner of the 32 px graph
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 40, 40)}
    x = torch.randn(2, 3, 40, 40)
    np.testing.assert_allclose(make_runner(model, "onnxruntime")(x)[0].numpy(), torch_outputs(model, x)[0],
                               atol=ATOL)


def test_the_runner_follows_in_place_weight_changes(tiny_dir):
    model = frossl_hub.load(tiny_dir, num_classes=0)
    x = torch.randn(2, 3, 32, 32)
    before = make_runner(model, "onnxruntime")(x)[0]
    with torch.no_grad():
        model.conv1.weight.mul_(2.0)
    after = make_runner(model, "onnxruntime")(x)[0]
    np.testing.assert_allclose(after.numpy(), torch_outputs(model, x)[0], atol=ATOL)
    assert not torch.allclose(before, after)


def test_embed_cli_backends_agree(tiny_dir, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    rows = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.npy"
        assert hub_cli(["embed", str(folder), "--model", str(tiny_dir), "--out", str(out),
                        "--workers", "0", "--no-progress", "--backend", backend]) == 0
        rows[backend] = np.load(out)
    np.testing.assert_allclose(rows["onnxruntime"], rows["torch"], atol=ATOL)
