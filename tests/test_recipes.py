"""train.recipes: one source of truth for how a run trains, for the CLI and Python alike."""
from __future__ import annotations

import pytest
import torch

from train.augment import ViewConfig, augment_views
from train.cli import build_parser, recipe_from_args
from train.recipes import METHOD_DEFAULTS, RECIPES, Recipe, RecipeError, get_recipe

# solo-learn's CIFAR yamls: LARS lr for batch 256 and weight decay of each baseline
SOLO_LEARN = {"simclr": (0.4, 1e-4), "barlow": (0.3, 1e-4), "vicreg": (0.3, 1e-4)}


@pytest.mark.parametrize("method", sorted(SOLO_LEARN))
def test_a_method_brings_its_own_learning_rate_and_weight_decay(method):
    recipe = get_recipe("cifar10", method=method)
    assert recipe.method == method
    assert (recipe.base_lr, recipe.weight_decay) == SOLO_LEARN[method] == tuple(
        METHOD_DEFAULTS[method].values())


def test_replacing_the_method_does_not_keep_frossls_learning_rate():
    frossl = get_recipe("stl10")  # FroSSL on STL-10: lr 0.1, not the CIFAR 0.3
    simclr = frossl.replace(method="simclr")
    assert frossl.base_lr == 0.1 and simclr.base_lr == 0.4
    assert simclr == get_recipe("stl10", method="simclr")
    assert simclr.replace(method="frossl") == frossl  # and back, to the data set's own


def test_a_learning_rate_given_with_the_method_wins():
    assert get_recipe("cifar10").replace(method="simclr", base_lr=0.05).base_lr == 0.05


def test_python_callers_and_the_command_line_build_the_same_recipe():
    args = build_parser().parse_args(["--dataset", "cifar10", "--out", "o", "--method", "vicreg",
                                      "--crop-size", "24", "--blur-prob", "1.0", "0.1"])
    expected = get_recipe("cifar10", method="vicreg").replace(crop_size=24, blur_prob=(1.0, 0.1))
    assert recipe_from_args(args) == expected


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": 0}, "--batch-size must be > 0"),
    ({"num_views": 1}, "--num-views must be at least 2"),
    ({"crop_scale": (0.5, 0.1)}, "--crop-scale"),
    ({"gray_prob": 1.5}, "--gray-prob must be in [0, 1]"),
    ({"blur_prob": (0.5, 2.0)}, "--blur-prob values must be in [0, 1]"),
    ({"arch": "vit"}, "--arch must be one of"),
    ({"method": "byol"}, "--method must be one of"),
])
def test_python_callers_get_the_command_lines_validation(changes, message):
    with pytest.raises(RecipeError) as info:
        get_recipe("cifar10").replace(**changes)
    assert message in str(info.value)


def test_the_recipe_holds_one_augmentation_config():
    recipe = RECIPES["tiny-imagenet"]
    assert isinstance(recipe.augment, ViewConfig) and recipe.crop_size == recipe.augment.size == 64
    views = recipe.views()
    assert [v.blur_prob for v in views] == [1.0, 0.1] and [v.solarize_prob for v in views] == [0.0, 0.2]
    assert all(not v.crop for v in recipe.views(crop=False))


def test_per_view_tuples_give_each_view_its_own_value():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    shared = ViewConfig(32, blur_prob=(1.0, 0.0), solarize_prob=(0.0, 1.0))
    resolved = [ViewConfig(32, blur_prob=1.0, solarize_prob=0.0), ViewConfig(32, blur_prob=0.0, solarize_prob=1.0)]
    a = augment_views(images, [shared, shared], (0.5,) * 3, (0.25,) * 3, torch.Generator().manual_seed(0))
    b = augment_views(images, resolved, (0.5,) * 3, (0.25,) * 3, torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_config_json_keeps_its_flat_layout_and_round_trips():
    recipe = get_recipe("tiny-imagenet", method="barlow").replace(projector_dims=(64, 32), seed=3)
    flat = recipe.to_dict()
    assert list(flat)[14:25] == ["crop_size", "crop_scale", "brightness", "contrast", "saturation", "hue",
                                 "jitter_prob", "gray_prob", "blur_prob", "solarize_prob", "flip_prob"]
    assert flat["architecture"] == "frossl_resnet18" and flat["lr"] == pytest.approx(0.6)
    as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}
    assert Recipe.from_dict(as_json) == recipe


def test_the_projector_is_the_methods_unless_set():
    assert get_recipe("cifar10").projector == (2048, 2048, 1024)
    assert get_recipe("cifar10", method="simclr").projector == (2048, 256)
    assert get_recipe("cifar10").replace(projector_dims=(32, 16)).projector == (32, 16)
