"""`python -m frossl_hub convert`: solo-learn / torchvision checkpoints to published folders."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict

import pytest
import timm
import torch
import torchvision
from safetensors.torch import load_file

import frossl_hub
from frossl_hub.cli import main
from frossl_hub.convert import ConversionError, convert_checkpoint
from frossl_hub.hub import verify
from helpers import one_torch_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cifar_model():
    """The network a solo-learn run trained: timm frossl_resnet18_cifar with a 10-way probe."""
    torch.manual_seed(0)
    model = timm.create_model("frossl_resnet18_cifar", num_classes=10).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
    return model


def solo_learn_state(model) -> Dict[str, torch.Tensor]:
    """solo-learn's layout: backbone.* (fc replaced by Identity), projector.*, classifier.*."""
    state = {f"backbone.{k}": v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    state.update({"projector.0.weight": torch.randn(2048, 512), "projector.0.bias": torch.zeros(2048),
                  "projector.1.running_mean": torch.zeros(2048),
                  "classifier.weight": model.fc.weight.detach().clone(),
                  "classifier.bias": model.fc.bias.detach().clone()})
    return state


def save_checkpoint(path: Path, state: Dict[str, torch.Tensor], **extra) -> Path:
    torch.save({"state_dict": state, "epoch": 399, "global_step": 78000,
                "pytorch-lightning_version": "2.1.0", **extra}, path)
    return path


@pytest.fixture(scope="module")
def solo_ckpt(cifar_model, tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("solo") / "frossl-cifar10-ep399.ckpt",
                           solo_learn_state(cifar_model))


@pytest.fixture(scope="module")
def converted(solo_ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "frossl-resnet18-cifar10"
    assert main(["convert", str(solo_ckpt), "--from", "solo-learn", "--dataset", "cifar10",
                 "--out", str(out)]) == 0
    return out


def convert_cli(capsys, *argv: str):
    code = main(["convert", *argv])
    return code, capsys.readouterr().err


# --- solo-learn ---------------------------------------------------------------------------------


def test_solo_learn_checkpoint_becomes_a_published_folder(converted):
    assert sorted(p.name for p in converted.iterdir()) == [
        "README.md", "SHA256SUMS", "config.json", "model.safetensors"]
    assert sorted(verify(converted)) == ["README.md", "config.json", "model.safetensors"]


def test_converted_weights_are_the_backbone_and_probe_under_timm_names(converted, cifar_model):
    stored = load_file(str(converted / "model.safetensors"))
    expected = cifar_model.state_dict()
    assert sorted(stored) == sorted(expected)
    assert all(torch.equal(stored[k], expected[k]) for k in expected)


def test_converted_config_takes_the_small_stem_and_the_datasets_spec(converted):
    config = json.loads((converted / "config.json").read_text())
    assert config["architecture"] == "frossl_resnet18_cifar"  # from the 3x3 conv1
    assert config["num_classes"] == 10
    assert config["label_names"] == list(frossl_hub.get_dataset_spec("cifar10").label_names)
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert config["frossl"] == {"converted_from": "solo-learn"}


def test_converted_model_computes_what_the_original_did(converted, cifar_model):
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(frossl_hub.load(converted)(x), cifar_model(x), atol=1e-5)


def test_a_solo_learn_checkpoint_without_classifier_gives_an_embedding_model(cifar_model, tmp_path):
    state = {k: v for k, v in solo_learn_state(cifar_model).items() if not k.startswith("classifier.")}
    out = convert_checkpoint(save_checkpoint(tmp_path / "c.ckpt", state), "official", tmp_path / "out",
                             "cifar10")
    model = frossl_hub.load(out)
    assert model.num_classes == 0 and model(torch.randn(1, 3, 32, 32)).shape == (1, 512)


def test_missing_bn_batch_counters_are_tolerated(cifar_model, tmp_path):
    state = {k: v for k, v in solo_learn_state(cifar_model).items()
             if not k.endswith("num_batches_tracked")}
    out = convert_checkpoint(save_checkpoint(tmp_path / "c.ckpt", state), "solo-learn",
                             tmp_path / "out", "cifar10")
    assert torch.equal(frossl_hub.load(out).layer1[0].bn1.running_mean,
                       cifar_model.layer1[0].bn1.running_mean)


def test_half_precision_output_loads_back_as_float32(solo_ckpt, tmp_path):
    out = convert_checkpoint(solo_ckpt, "solo-learn", tmp_path / "out", "cifar10", dtype="float16")
    assert load_file(str(out / "model.safetensors"))["conv1.weight"].dtype == torch.float16
    assert frossl_hub.load(out).conv1.weight.dtype == torch.float32


# --- torchvision --------------------------------------------------------------------------------


def test_torchvision_resnet18_converts_to_the_standard_stem_and_computes_the_same(tmp_path, capsys):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    code, err = convert_cli(capsys, str(tmp_path / "resnet18.pth"), "--from", "torchvision",
                            "--dataset", "imagenet", "--out", str(tmp_path / "out"))
    assert code == 0, err
    model = frossl_hub.load(tmp_path / "out")
    assert model.pretrained_cfg["architecture"] == "frossl_resnet18" and model.num_classes == 1000
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(model(x), reference(x), atol=1e-4)


# --- failures: message on stderr, exit code 2 ---------------------------------------------------


def test_an_unexpected_key_is_refused(cifar_model, tmp_path, capsys):
    state = {**solo_learn_state(cifar_model), "backbone.layer5.0.conv1.weight": torch.zeros(1)}
    code, err = convert_cli(capsys, str(save_checkpoint(tmp_path / "c.ckpt", state)), "--from",
                            "solo-learn", "--dataset", "cifar10", "--out", str(tmp_path / "out"))
    assert code == 2 and "unexpected keys ['layer5.0.conv1.weight']" in err
    assert not (tmp_path / "out").exists()


def test_a_missing_key_is_refused(cifar_model, tmp_path, capsys):
    state = solo_learn_state(cifar_model)
    del state["backbone.layer4.1.bn2.weight"]
    code, err = convert_cli(capsys, str(save_checkpoint(tmp_path / "c.ckpt", state)), "--from",
                            "solo-learn", "--dataset", "cifar10", "--out", str(tmp_path / "out"))
    assert code == 2 and "missing keys ['layer4.1.bn2.weight']" in err


def test_a_wrong_shape_is_refused(cifar_model, tmp_path, capsys):
    state = {**solo_learn_state(cifar_model), "backbone.layer2.0.conv1.weight": torch.zeros(128, 64, 5, 5)}
    code, err = convert_cli(capsys, str(save_checkpoint(tmp_path / "c.ckpt", state)), "--from",
                            "solo-learn", "--dataset", "cifar10", "--out", str(tmp_path / "out"))
    assert code == 2 and "layer2.0.conv1.weight: (128, 64, 5, 5) vs (128, 64, 3, 3)" in err


def test_a_torchvision_state_dict_is_not_a_solo_learn_checkpoint(tmp_path, capsys):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r.pth")
    code, err = convert_cli(capsys, str(tmp_path / "r.pth"), "--from", "solo-learn", "--dataset",
                            "imagenet", "--out", str(tmp_path / "out"))
    assert code == 2 and "no 'backbone.*' keys" in err


def test_a_pickled_object_is_refused_by_weights_only_loading(cifar_model, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "c.ckpt", solo_learn_state(cifar_model),
                           hyper_parameters=argparse.Namespace(lr=0.3, method="frossl"))
    code, err = convert_cli(capsys, str(ckpt), "--from", "solo-learn", "--dataset", "cifar10",
                            "--out", str(tmp_path / "out"))
    assert code == 2 and "weights_only=True" in err and "Traceback" not in err


def test_a_dataset_with_other_channels_is_refused(solo_ckpt, tmp_path):
    with pytest.raises(ConversionError, match="3-channel input but Fashion-MNIST images have 1"):
        convert_checkpoint(solo_ckpt, "solo-learn", tmp_path / "out", "fashion-mnist")


def test_converting_into_a_non_empty_folder_needs_overwrite(solo_ckpt, converted, capsys):
    before = (converted / "SHA256SUMS").read_text()
    code, err = convert_cli(capsys, str(solo_ckpt), "--from", "solo-learn", "--dataset", "cifar10",
                            "--out", str(converted))
    assert code == 2 and "--overwrite" in err
    assert (converted / "SHA256SUMS").read_text() == before


def test_a_missing_checkpoint_exits_2(tmp_path, capsys):
    code, err = convert_cli(capsys, str(tmp_path / "nope.ckpt"), "--from", "solo-learn",
                            "--dataset", "cifar10", "--out", str(tmp_path / "out"))
    assert code == 2 and "no checkpoint file" in err
