"""The catalog, the timm registrations, and timm loading our published folders."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

import frossl_hub
from frossl_hub.catalog import CATALOG, get_entry, list_models
from frossl_hub.models import pretrained_cfg_for
from frossl_hub.specs import get_dataset_spec
from helpers import one_torch_thread, publish_tiny_model  # noqa: F401  (fixture)

DATASETS = ["cifar10", "cifar100", "stl10", "tiny-imagenet", "imagenet100", "imagenet",
            "fashion-mnist"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    return publish_tiny_model(tmp_path_factory.mktemp("models") / "cifar10")


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


# --- catalog ------------------------------------------------------------------------------------


def test_catalog_has_one_model_per_dataset():
    assert sorted(CATALOG) == sorted(f"frossl-resnet18-{d}" for d in DATASETS)


@pytest.mark.parametrize("dataset", DATASETS)
def test_catalog_entry_describes_weights_input_and_labels(dataset):
    entry = get_entry(dataset)
    spec = frossl_hub.get_dataset_spec(dataset)
    info = entry.to_dict()
    assert entry.dataset == dataset and entry.architecture in timm.list_models("frossl_resnet18*")
    assert entry.hf_hub_id == f"frossl-hub/frossl-resnet18-{dataset}"
    assert entry.filename == "model.safetensors"
    assert info["num_classes"] == spec.num_classes
    assert info["input_size"] == [spec.in_chans, spec.image_size, spec.image_size]
    assert info["label_names"] == (list(spec.label_names) if spec.label_names else None)
    assert info["mean"] == list(spec.mean) and info["std"] == list(spec.std)
    assert {"sha256", "metrics", "status"} <= set(info)
    assert entry.has_weights == (entry.status == "published" and entry.sha256 is not None)


@pytest.mark.parametrize("dataset, arch", [("cifar100", "frossl_resnet18_cifar"),
                                           ("fashion-mnist", "frossl_resnet18_nopool"),  # bundled: its stem
                                           ("stl10", "frossl_resnet18"),
                                           ("imagenet", "frossl_resnet18")])
def test_small_image_datasets_get_the_small_stem(dataset, arch):
    assert get_entry(dataset).architecture == arch


def test_names_are_normalised_like_open_clip_tags():
    assert get_entry("FROSSL_RESNET18_CIFAR10").name == "frossl-resnet18-cifar10"
    assert get_entry("tiny_imagenet").name == "frossl-resnet18-tiny-imagenet"


def test_list_models_filters_like_timm():
    assert list_models() == sorted(CATALOG)
    assert list_models("*imagenet*") == ["frossl-resnet18-imagenet", "frossl-resnet18-imagenet100",
                                         "frossl-resnet18-tiny-imagenet"]
    assert list_models("*CIFAR100") == ["frossl-resnet18-cifar100"]
    assert list_models(pretrained=True) == [n for n, e in sorted(CATALOG.items()) if e.has_weights]


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_catalog_entry_is_a_timm_pretrained_tag(name):
    entry = CATALOG[name]
    cfg = timm.models.get_pretrained_cfg(entry.timm_name)
    assert cfg is not None and cfg.num_classes == entry.spec.num_classes
    assert tuple(cfg.input_size) == (entry.spec.in_chans, entry.spec.image_size, entry.spec.image_size)


def test_timm_lists_as_pretrained_only_the_published_weights():
    tagged = [n for n in timm.list_pretrained("frossl_resnet18*") if "." in n]  # timm also lists
    assert sorted(tagged) == sorted(e.timm_name for e in CATALOG.values() if e.has_weights)  # bare defaults


# --- timm architectures -------------------------------------------------------------------------


def test_state_dict_keys_equal_timm_resnet18s():
    reference = timm.create_model("resnet18", num_classes=10).state_dict()
    for arch in ("frossl_resnet18", "frossl_resnet18_cifar"):
        assert list(timm.create_model(arch, num_classes=10).state_dict()) == list(reference)


def test_standard_stem_arch_has_resnet18s_shapes():
    reference = timm.create_model("resnet18").state_dict()
    state = timm.create_model("frossl_resnet18", num_classes=1000).state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in reference.items()}


def test_small_stem_is_a_3x3_stride_1_conv_without_max_pool():
    model = timm.create_model("frossl_resnet18_cifar")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)


def test_create_model_with_a_head(x):
    model = timm.create_model("frossl_resnet18_cifar", num_classes=10).eval()
    assert model(x).shape == (2, 10)


def test_forward_features_and_pre_logits(x):
    model = timm.create_model("frossl_resnet18_cifar", num_classes=10).eval()
    features = model.forward_features(x)
    assert features.shape == (2, 512, 4, 4)  # 32 px / 8: the stem does not downsample
    assert model.forward_head(features, pre_logits=True).shape == (2, 512)


def test_num_classes_0_is_the_512d_embedding(x):
    model = timm.create_model("frossl_resnet18_cifar", num_classes=0).eval()
    assert model.num_features == 512 and model(x).shape == (2, 512)


@pytest.mark.parametrize("arch", ["frossl_resnet18_cifar", "frossl_resnet18"])
def test_one_input_channel(arch):
    model = timm.create_model(arch, in_chans=1, num_classes=10).eval()
    assert model.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_features_only_reports_the_small_stems_reductions():
    model = timm.create_model("frossl_resnet18_cifar", features_only=True).eval()
    assert model.feature_info.reduction() == [1, 1, 2, 4, 8]
    shapes = [tuple(f.shape[-2:]) for f in model(torch.randn(1, 3, 32, 32))]
    assert shapes == [(32, 32), (32, 32), (16, 16), (8, 8), (4, 4)]


def test_untagged_pretrained_cfgs_describe_the_default_inputs():
    cifar = timm.create_model("frossl_resnet18_cifar").pretrained_cfg
    imagenet = timm.create_model("frossl_resnet18.imagenet").pretrained_cfg  # bare name: first weights
    assert tuple(cifar["input_size"]) == (3, 32, 32) and cifar["num_classes"] == 10
    assert tuple(imagenet["input_size"]) == (3, 224, 224) and imagenet["num_classes"] == 1000
    assert cifar["first_conv"] == "conv1" and cifar["classifier"] == "fc"


def test_tagged_pretrained_cfg_takes_the_datasets_spec():
    model = timm.create_model(get_entry("fashion-mnist").timm_name, in_chans=1)
    cfg = model.pretrained_cfg
    assert tuple(cfg["input_size"]) == (1, 28, 28) and tuple(cfg["mean"]) == (0.2860,)
    assert model.num_classes == 10 and cfg["label_names"][0] == "T-shirt/top"


def test_pretrained_tag_without_weights_says_so():
    assert not get_entry("cifar100").has_weights
    with pytest.raises(RuntimeError, match="pretrained"):
        timm.create_model("frossl_resnet18_cifar.cifar100", pretrained=True)


# --- timm loads our published folders -----------------------------------------------------------


def test_timm_loads_a_published_weights_file(published, x):
    model = timm.create_model("frossl_resnet18_cifar", pretrained=True, num_classes=10,
                              pretrained_cfg_overlay=dict(file=str(published / "model.safetensors")))
    assert torch.equal(model.eval()(x), frossl_hub.load(published)(x))


def test_timm_loads_a_published_folder_with_local_dir(published, x):
    model = timm.create_model(f"local-dir:{published}", pretrained=True).eval()
    assert type(model).__name__ == "SmallImageResNet"
    assert torch.equal(model(x), frossl_hub.load(published)(x))
    assert tuple(model.pretrained_cfg["input_size"]) == (3, 32, 32)
    assert model.pretrained_cfg["label_names"][0] == "airplane"


def test_timm_local_dir_embedding_model_matches_frossl_hub(published, x):
    model = timm.create_model(f"local-dir:{published}", pretrained=True, num_classes=0).eval()
    assert torch.equal(model(x), frossl_hub.load(published, num_classes=0)(x))


def test_timm_data_config_of_a_loaded_model_is_the_datasets(published):
    data_cfg = timm.data.resolve_data_config(model=frossl_hub.load(published))
    assert data_cfg["input_size"] == (3, 32, 32)
    assert data_cfg["mean"] == pytest.approx((0.4914, 0.4822, 0.4465))
    assert data_cfg["crop_pct"] == 1.0


# --- the intermediate stems (issue 19) ---------------------------------------------------------


@pytest.mark.parametrize("arch, kernel, stride, pooled, reductions, final", [
    ("frossl_resnet18", 7, 2, True, [2, 4, 8, 16, 32], 1),
    ("frossl_resnet18_nopool", 7, 2, False, [2, 2, 4, 8, 16], 2),
    ("frossl_resnet18_s2", 3, 2, False, [2, 2, 4, 8, 16], 2),
    ("frossl_resnet18_s1pool", 3, 1, True, [1, 2, 4, 8, 16], 2),
    ("frossl_resnet18_cifar", 3, 1, False, [1, 1, 2, 4, 8], 4),
])
def test_each_stem_downsamples_as_its_name_says(arch, kernel, stride, pooled, reductions, final):
    model = timm.create_model(arch, features_only=True, in_chans=3).eval()  # a bare name takes its first tag's input
    assert model.conv1.kernel_size == (kernel, kernel) and model.conv1.stride == (stride, stride)
    assert isinstance(model.maxpool, torch.nn.MaxPool2d) == pooled
    assert model.feature_info.reduction() == reductions
    assert model(torch.randn(1, 3, 32, 32))[-1].shape[-2:] == (final, final)
    for dataset, side in (("cifar10", 32), ("fashion-mnist", 28), ("tiny-imagenet", 64)):
        final_map = tuple(model(torch.randn(1, 3, side, side))[-1].shape[-2:])
        assert pretrained_cfg_for(get_dataset_spec(dataset), arch)["pool_size"] == final_map, dataset


@pytest.mark.parametrize("arch", ["frossl_resnet18_s2", "frossl_resnet18_s1pool"])
def test_intermediate_stems_keep_timm_resnet18_keys_and_shapes_but_conv1(arch):
    reference = timm.create_model("resnet18", num_classes=10).state_dict()
    state = timm.create_model(arch, num_classes=10).state_dict()
    assert list(state) == list(reference)
    assert {k for k in state if state[k].shape != reference[k].shape} == {"conv1.weight"}


@pytest.mark.parametrize("timm_first", [False, True])
def test_import_frossl_hub_is_light_and_timm_still_knows_the_architectures(timm_first):
    """`import frossl_hub` imports neither torch nor timm; timm learns our architectures on its
    own import, whichever of the two comes first."""
    import subprocess
    import sys

    code = ("import sys\n"
            + ("import timm\n" if timm_first else "")
            + "import frossl_hub\n"
            + ("" if timm_first else "assert 'torch' not in sys.modules and 'timm' not in sys.modules\n")
            + "import timm\n"
            + "assert all(timm.is_model(a) for a in ('frossl_resnet18', 'frossl_resnet18_cifar'))\n"
            + "assert frossl_hub.load.__module__ == 'frossl_hub.hub'\n"
            + "assert frossl_hub.ResolvedModel and frossl_hub.CatalogEntry and frossl_hub.model_config\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
