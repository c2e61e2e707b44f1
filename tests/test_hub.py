"""frossl_hub.hub: publishing, resolving (path, $FROSSL_HUB_DIR, HF cache), checksums, load."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from timm.models.resnet import ResNet

import frossl_hub
from frossl_hub import ChecksumError, ModelNotFoundError
from frossl_hub.catalog import CATALOG
from frossl_hub.hub import read_sums, resolve, save_pretrained, verify
from helpers import one_torch_thread, publish_tiny_model  # noqa: F401  (fixture)

NAME = "frossl-resnet18-cifar100"  # a catalog model with no weights yet (cifar10 is bundled)
CIFAR10_LABELS = list(frossl_hub.get_dataset_spec("cifar10").label_names)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """One cifar10-shaped model, published once for the whole module (read-only)."""
    return publish_tiny_model(tmp_path_factory.mktemp("hub") / "model")


@pytest.fixture
def hub_dir(published, tmp_path, monkeypatch) -> Path:
    """A writable $FROSSL_HUB_DIR holding the model under its catalog name."""
    shutil.copytree(published, tmp_path / "hub" / NAME)
    monkeypatch.setenv("FROSSL_HUB_DIR", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture
def offline_hf(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache with downloads switched off."""
    home = tmp_path / "hf_home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("FROSSL_HUB_DIR", raising=False)
    return home


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flip_one_byte(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def put_in_hf_cache(folder: Path, hf_home: Path, repo_id: str) -> Path:
    """Lay ``folder`` out as huggingface_hub's cache does after a download of ``repo_id``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)
    return repo / "snapshots" / commit


def published_entry(monkeypatch, weights: Path, **changes):
    """Pretend the cifar10 catalog entry has published weights with ``weights``' digest."""
    fields = {"status": "published", "sha256": sha256(weights), **changes}
    entry = dataclasses.replace(CATALOG[NAME], **fields)
    monkeypatch.setitem(CATALOG, NAME, entry)
    return entry


# --- the published folder ----------------------------------------------------------------------


def test_published_folder_holds_weights_config_card_and_sums(published):
    assert sorted(p.name for p in published.iterdir()) == [
        "README.md", "SHA256SUMS", "config.json", "model.safetensors"]


def test_sha256sums_lists_every_other_file_with_its_digest(published):
    sums = read_sums(published)
    assert sorted(sums) == ["README.md", "config.json", "model.safetensors"]
    assert all(sums[name] == sha256(published / name) for name in sums)


def test_sha256sums_written_by_sha256sum_binary_mode_are_read_and_verified(published, tmp_path):
    import subprocess

    folder = shutil.copytree(published, tmp_path / "model")
    names = ["README.md", "config.json", "model.safetensors"]
    binary = subprocess.run(["sha256sum", "-b", *names], cwd=folder, capture_output=True, text=True,
                            check=True).stdout
    assert all(" *" in line for line in binary.splitlines())  # `HASH *name`
    (folder / "SHA256SUMS").write_text(binary)
    assert read_sums(folder) == read_sums(published)
    assert verify(folder) == read_sums(published)


def test_config_json_is_timm_hugging_face_format(published):
    config = json.loads((published / "config.json").read_text())
    assert config["architecture"] == "frossl_resnet18_cifar"
    assert config["num_classes"] == 10
    assert config["num_features"] == 512
    assert config["label_names"] == CIFAR10_LABELS
    assert config["model_args"] == {"in_chans": 3}
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [3, 32, 32]
    assert cfg["mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    assert cfg["num_classes"] == 10


def test_save_pretrained_writes_a_model_card_when_none_is_given(published, tmp_path):
    state = load_file(str(published / "model.safetensors"))
    config = json.loads((published / "config.json").read_text())
    out = save_pretrained(state, tmp_path / "plain", config)
    assert "frossl_resnet18_cifar" in (out / "README.md").read_text()
    assert "README.md" in read_sums(out)


# --- load by path ------------------------------------------------------------------------------


def test_load_by_path_gives_a_timm_model_in_eval_mode(published):
    model = frossl_hub.load(published)
    assert isinstance(model, ResNet)
    assert not model.training
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_loaded_pretrained_cfg_describes_the_preprocessing(published):
    cfg = frossl_hub.load(published).pretrained_cfg
    assert tuple(cfg["input_size"]) == (3, 32, 32)
    assert tuple(cfg["mean"]) == pytest.approx((0.4914, 0.4822, 0.4465))
    assert tuple(cfg["std"]) == pytest.approx((0.2470, 0.2435, 0.2616))
    assert cfg["label_names"] == CIFAR10_LABELS
    assert cfg["file"] == str(published / "model.safetensors")


def test_load_puts_the_published_tensors_in_the_model(published):
    stored = load_file(str(published / "model.safetensors"))
    state = frossl_hub.load(published).state_dict()
    assert sorted(state) == sorted(stored)
    assert all(torch.equal(state[k], stored[k]) for k in stored)


def test_load_accepts_the_weights_file_itself(published):
    model = frossl_hub.load(published / "model.safetensors")
    assert torch.equal(model.fc.weight, frossl_hub.load(published).fc.weight)


def test_num_classes_0_gives_the_512d_embedding_model(published):
    model = frossl_hub.load(published, num_classes=0)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 512)


def test_other_num_classes_keeps_the_backbone_and_adds_a_fresh_head(published):
    probe = frossl_hub.load(published)
    model = frossl_hub.load(published, num_classes=3)
    assert model.fc.out_features == 3
    assert torch.equal(model.layer4[1].conv2.weight, probe.layer4[1].conv2.weight)


def test_pretrained_false_keeps_the_config_but_not_the_weights(published):
    model = frossl_hub.load(published, pretrained=False)
    assert model.num_classes == 10
    assert not torch.equal(model.fc.weight, frossl_hub.load(published).fc.weight)


def test_dtype_argument_converts_the_parameters(published):
    model = frossl_hub.load(published, dtype=torch.bfloat16, device="cpu")
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_storage_loads_back_as_float32(tmp_path, dtype):
    folder = publish_tiny_model(tmp_path / dtype, dtype=dtype)
    assert load_file(str(folder / "model.safetensors"))["fc.weight"].dtype == getattr(torch, dtype)
    model = frossl_hub.load(folder)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_a_folder_without_config_is_not_a_model(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="config.json"):
        frossl_hub.load(tmp_path)


def test_a_missing_path_is_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a published model"):
        frossl_hub.load(tmp_path / "nowhere")


def test_an_unknown_name_lists_the_catalog(monkeypatch):
    monkeypatch.delenv("FROSSL_HUB_DIR", raising=False)
    with pytest.raises(ModelNotFoundError, match="Available: .*frossl-resnet18-cifar100"):
        frossl_hub.load("frossl-resnet18-mnist-typo")


def test_weights_that_do_not_fit_the_architecture_are_refused(published, tmp_path):
    folder = shutil.copytree(published, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["architecture"] = "frossl_resnet18"  # 7x7 stem; the weights have a 3x3 conv1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match="do not fit architecture frossl_resnet18"):
        frossl_hub.load(folder)


# --- checksums ---------------------------------------------------------------------------------


def test_a_corrupt_byte_is_caught_by_the_folder_sums(published, tmp_path):
    folder = shutil.copytree(published, tmp_path / "model")
    good = sha256(folder / "model.safetensors")
    flip_one_byte(folder / "model.safetensors")
    with pytest.raises(ChecksumError) as info:
        frossl_hub.load(folder)
    assert good in str(info.value) and sha256(folder / "model.safetensors") in str(info.value)


def test_verify_returns_each_checked_file_and_digest(published):
    assert verify(published) == read_sums(published)


def test_verify_catches_a_corrupt_model_card(published, tmp_path):
    folder = shutil.copytree(published, tmp_path / "model")
    (folder / "README.md").write_text("# edited\n")
    with pytest.raises(ChecksumError, match="README.md"):
        verify(folder)


# --- load by name: $FROSSL_HUB_DIR and the catalog's digest ------------------------------------


def test_a_catalog_name_resolves_in_frossl_hub_dir(hub_dir):
    resolved = resolve(NAME)
    assert resolved.folder == hub_dir / NAME
    assert resolved.source == "env"


def test_load_by_catalog_name_or_short_name(hub_dir, published):
    x = torch.randn(1, 3, 32, 32)
    expected = frossl_hub.load(published)(x)
    assert torch.equal(frossl_hub.load(NAME)(x), expected)
    assert torch.equal(frossl_hub.load("cifar100")(x), expected)


def test_by_name_without_a_catalog_digest_the_folder_sums_are_checked(hub_dir):
    assert CATALOG[NAME].sha256 is None
    flip_one_byte(hub_dir / NAME / "model.safetensors")
    with pytest.raises(ChecksumError, match="SHA256SUMS"):
        frossl_hub.load(NAME)


def test_by_name_the_catalog_digest_is_checked(hub_dir, monkeypatch):
    weights = hub_dir / NAME / "model.safetensors"
    entry = published_entry(monkeypatch, weights, sha256="ab" * 32)
    with pytest.raises(ChecksumError, match="catalog entry") as info:
        frossl_hub.load(NAME)
    assert entry.sha256 in str(info.value) and sha256(weights) in str(info.value)


def test_weights_matching_the_catalog_digest_load(hub_dir, monkeypatch):
    published_entry(monkeypatch, hub_dir / NAME / "model.safetensors")
    assert frossl_hub.load(NAME).num_classes == 10


# --- the Hugging Face cache, offline ------------------------------------------------------------


def test_hf_hub_name_loads_from_the_hf_home_cache_offline(published, offline_hf):
    put_in_hf_cache(published, offline_hf, "someone/tiny")
    resolved = resolve("hf-hub:someone/tiny")
    assert resolved.source == "hf-hub"
    assert resolved.folder.is_relative_to(offline_hf)
    assert frossl_hub.load("hf-hub:someone/tiny").num_classes == 10


def test_hf_hub_name_missing_from_an_empty_offline_cache_is_not_found(offline_hf):
    with pytest.raises(ModelNotFoundError) as info:
        frossl_hub.load("hf-hub:org/name")
    message = str(info.value)
    assert "org/name" in message and str(offline_hf) in message and "HF_HUB_OFFLINE" in message
    assert "python -m train --dataset" in message


def test_untrained_catalog_name_says_where_it_looked_and_how_to_train_it(offline_hf, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("FROSSL_HUB_DIR", str(tmp_path / "empty_hub"))
    with pytest.raises(ModelNotFoundError) as info:
        frossl_hub.load(NAME)
    message = str(info.value)
    assert str(tmp_path / "empty_hub" / NAME) in message
    assert "bundled" in message
    assert "python -m train --dataset cifar100" in message
    assert "not trained yet" in message


def test_published_catalog_name_falls_back_to_the_hf_cache(published, offline_hf, monkeypatch):
    entry = published_entry(monkeypatch, published / "model.safetensors")
    put_in_hf_cache(published, offline_hf, entry.hf_hub_id)
    resolved = resolve(NAME)
    assert resolved.source == "hf-hub"
    assert frossl_hub.load(NAME).num_classes == 10


def test_published_catalog_name_missing_everywhere_mentions_the_hf_cache(published, offline_hf,
                                                                         monkeypatch):
    entry = published_entry(monkeypatch, published / "model.safetensors")
    with pytest.raises(ModelNotFoundError) as info:
        frossl_hub.load(NAME)
    assert entry.hf_hub_id in str(info.value) and str(offline_hf) in str(info.value)


def test_a_corrupt_hf_cache_file_fails_the_catalog_digest(published, offline_hf, monkeypatch):
    entry = published_entry(monkeypatch, published / "model.safetensors")
    snapshot = put_in_hf_cache(published, offline_hf, entry.hf_hub_id)
    flip_one_byte(snapshot / "model.safetensors")
    with pytest.raises(ChecksumError, match=entry.sha256):
        frossl_hub.load(NAME)


# --- atomic publishing -------------------------------------------------------------------------


def test_publishing_into_a_non_empty_folder_needs_overwrite(published, tmp_path):
    state = load_file(str(published / "model.safetensors"))
    config = json.loads((published / "config.json").read_text())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        save_pretrained(state, tmp_path / "out", config)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]
    save_pretrained(state, tmp_path / "out", config, overwrite=True)
    assert not (tmp_path / "out" / "notes.txt").exists()
    assert verify(tmp_path / "out")


def test_a_failed_publish_leaves_nothing_behind(published, tmp_path):
    state = load_file(str(published / "model.safetensors"))
    config = json.loads((published / "config.json").read_text())
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError):
        save_pretrained(state, tmp_path / "runs" / "out", config,
                        extra_files={"plot.png": tmp_path / "missing.png"})
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_config_without_architecture_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="architecture"):
        save_pretrained({}, tmp_path / "out", {"num_classes": 0, "pretrained_cfg": {}})
    assert not (tmp_path / "out").exists()
