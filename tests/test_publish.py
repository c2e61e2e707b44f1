"""From a training run to a published, timm-loadable folder with a measured card."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import timm
import torch
import yaml

import frossl_hub
from formats import write_fashion_mnist
from helpers import BUNDLED
from frossl_hub.hub import read_sums
from train.cards import CARDS_DIR, card_for, generate_cards
from train.checkpoint import CheckpointError
from train.cli import build_parser, recipe_from_args
from train.cli import main as train_main
from train.linear import HEAD_NAME, LINEAR_NAME, backbone_from_checkpoint, load_run, run_linear_probe
from train.plot import PLOT_NAMES, plot_run, save_png
from train.publish import publish_run, recipe_command
from train.recipes import get_recipe

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 3-step Fashion-MNIST run taken through `python -m train`'s default stages."""
    root = tmp_path_factory.mktemp("publish")
    data = root / "data"
    write_fashion_mnist(data, gz=False, n=48)
    out = root / "run"
    argv = ["--dataset", "fashion-mnist", "--data-dir", str(data), "--out", str(out), "--batch-size", "16",
            "--projector-dims", "32", "32", "--max-steps", "3", "--eval-every-epochs", "0.34",
            "--no-progress", "--threads", "1"]
    assert train_main(argv) == 0
    return out


def test_train_runs_pretraining_probe_and_publish_by_default(run):
    assert (run / LINEAR_NAME).is_file() and (run / HEAD_NAME).is_file()
    assert (run / "published" / "model.safetensors").is_file()


def test_linear_probe_reports_top1_top5_knn_and_the_random_baseline(run):
    result = json.loads((run / LINEAR_NAME).read_text())
    for key in ("top1", "top5", "knn_top1"):
        assert 0.0 <= result[key] <= 1.0
    assert result["top5"] >= result["top1"]
    assert result["split"] == "test" and result["num_test"] == 48
    assert 0.0 <= result["random_init"]["top1"] <= 1.0


def test_linear_probe_caches_features_and_reuses_them(run):
    caches = sorted(p.name for p in (run / "features").iterdir())
    assert any(name.startswith("train-step3") for name in caches)
    before = {p: p.stat().st_mtime_ns for p in (run / "features").iterdir()}
    run_linear_probe(run, device="cpu")  # same step, same data: nothing is extracted again
    assert {p: p.stat().st_mtime_ns for p in (run / "features").iterdir()} == before


def test_published_folder_holds_weights_config_card_plots_and_checksums(run):
    folder = run / "published"
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"model.safetensors", "config.json", "README.md", "SHA256SUMS", "metrics.json"} <= names
    assert {f"plots/{n}" for n in PLOT_NAMES} <= names
    assert set(read_sums(folder)) == names - {"SHA256SUMS"}
    assert frossl_hub.verify(folder)


def test_published_weights_hold_backbone_and_probe_head_only(run):
    from safetensors.torch import load_file

    state = load_file(str(run / "published" / "model.safetensors"))
    assert state["fc.weight"].shape == (10, 512)
    assert not any(k.startswith(("projector", "classifier")) for k in state)
    config = json.loads((run / "published" / "config.json").read_text())
    assert config["architecture"] == "frossl_resnet18_cifar" and config["num_classes"] == 10
    assert config["label_names"][0] == "T-shirt/top"
    assert config["pretrained_cfg"]["input_size"] == [1, 28, 28]


def test_timm_and_frossl_hub_load_the_same_model_as_the_run(run):
    recipe, _ = load_run(run)
    backbone, _ = backbone_from_checkpoint(run, recipe, torch.device("cpu"))
    from safetensors.torch import load_file

    head = load_file(str(run / HEAD_NAME))
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        expected = backbone(x) @ head["fc.weight"].T + head["fc.bias"]
        ours = frossl_hub.load(run / "published")(x)
        theirs = timm.create_model(f"local-dir:{run / 'published'}", pretrained=True).eval()(x)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(theirs, ours)


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_card_metadata_parses_and_its_numbers_are_the_runs(run):
    card = (run / "published" / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "timm"
    metrics = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    result = json.loads((run / LINEAR_NAME).read_text())
    assert metrics["Linear-probe top-1"] == round(100 * result["top1"], 2)
    assert metrics["kNN top-1 (k=20)"] == round(100 * result["knn_top1"], 2)
    assert f"{100 * result['random_init']['top1']:.2f} %" in card
    assert "python -m train" in card and "--dataset fashion-mnist" in card


def test_float16_publish_reports_numbers_measured_with_the_float16_weights(run, tmp_path):
    out = publish_run(run, tmp_path / "fp16", dtype="float16")
    from safetensors.torch import load_file

    assert load_file(str(out / "model.safetensors"))["conv1.weight"].dtype == torch.float16
    summary = json.loads((out / "metrics.json").read_text())["published"]
    assert 0.0 <= summary["linear_top1"] <= 1.0
    model = frossl_hub.load(out)
    assert next(model.parameters()).dtype == torch.float32
    assert "float16 weights as published" in (out / "README.md").read_text()


def test_publish_gallery_ships_test_images_of_the_run_listed_in_sha256sums(run, tmp_path):
    from frossl_hub.gallery import read_gallery
    from train.data import load_arrays
    from train.publish import main as publish_main

    out = tmp_path / "with-gallery"
    assert publish_main([str(run), "--out", str(out), "--gallery", "12"]) == 0
    gallery = read_gallery(out)  # verified against SHA256SUMS
    test = load_arrays("fashion-mnist", run.parent / "data", "test")
    assert len(gallery) == 12 and gallery.split == "test"
    assert torch.equal(gallery.images, test.images[gallery.source_index])
    assert frossl_hub.verify(out)


def test_catalog_line_names_the_published_architecture_and_weights(run):
    from frossl_hub._io import sha256_file
    from train.publish import catalog_line

    folder = run / "published"
    recipe, _config = load_run(run)
    line = catalog_line(folder)
    assert line.startswith(f'_entry("fashion-mnist", architecture="{recipe.architecture}", status=PUBLISHED, ')
    assert f'sha256="{sha256_file(folder / "model.safetensors")}"' in line


def test_publishing_over_an_existing_folder_needs_overwrite_and_leaves_it_intact(run):
    folder = run / "published"
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="--overwrite"):
        publish_run(run, folder)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".published")]


def test_publish_without_probe_results_names_the_missing_step(run, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "last.ckpt", "metrics.jsonl"):
        (bare / name).write_bytes((run / name).read_bytes())
    with pytest.raises(CheckpointError, match="python -m train.linear"):
        publish_run(bare)
    assert not (bare / "published").exists()


def test_publish_and_probe_refuse_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(CheckpointError, match="not a training run"):
        publish_run(tmp_path)
    with pytest.raises(CheckpointError, match="not a training run"):
        run_linear_probe(tmp_path)


def test_plot_renders_loss_accuracy_and_spectrum_pngs(run, tmp_path):
    paths = plot_run(run, tmp_path)
    assert [p.name for p in paths] == list(PLOT_NAMES)
    assert all(p.read_bytes().startswith(PNG) for p in paths)


def test_plots_free_their_figures_even_when_a_save_fails(run, tmp_path):
    import matplotlib.pyplot as plt

    plot_run(run, tmp_path)
    not_a_folder = tmp_path / "plots-is-a-file"
    not_a_folder.write_text("keep me")
    fig = plt.figure()
    with pytest.raises(OSError):
        save_png(fig, not_a_folder / "plot.png")
    assert plt.get_fignums() == []
    assert not_a_folder.read_text() == "keep me"


def test_recipe_command_reproduces_the_recipe():
    recipe = get_recipe("cifar10").replace(epochs=30.0, arch="frossl_resnet18", blur_prob=(1.0, 0.1))
    command = recipe_command(recipe, data_dir="D", out="O")
    argv = shlex.split(command.replace("\\\n", " "))[3:]
    assert recipe_from_args(build_parser().parse_args(argv)) == recipe


def test_committed_model_cards_are_up_to_date():
    for name, entry in frossl_hub.CATALOG.items():
        committed = CARDS_DIR / f"{name}.md"
        assert committed.is_file(), f"run `python -m train.cards`: {committed} is missing"
        assert committed.read_text() == card_for(entry, card_dir=CARDS_DIR), \
            f"run `python -m train.cards`: {name} changed"


def test_committed_model_cards_link_to_plots_that_exist():
    for card in CARDS_DIR.glob("frossl-*.md"):
        for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card.read_text()):
            assert (CARDS_DIR / link).is_file(), f"{card.name} links to missing {link}"


def test_generate_cards_writes_one_card_per_catalog_model(tmp_path):
    generated = generate_cards(tmp_path)
    assert sorted(generated) == sorted(frossl_hub.CATALOG)
    assert all(path.parent == tmp_path and path.is_file() for path in generated.values())


def test_unpublished_cards_say_so_and_give_the_command():
    card = card_for(frossl_hub.get_entry("frossl-resnet18-imagenet"))
    assert "not yet trained" in card and "python -m train" in card and "--dataset imagenet" in card


def test_paper_protocol_probe_trains_on_augmented_images_and_reports(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("published", "features"))
    result = run_linear_probe(copy, device="cpu", protocol="paper", random_baseline=False, epochs=3)
    assert result["protocol"] == "paper" and 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert json.loads((copy / LINEAR_NAME).read_text())["protocol"] == "paper"


def test_every_card_parses_as_hugging_face_model_card_data():
    from huggingface_hub import ModelCard

    for path in sorted(CARDS_DIR.glob("frossl-*.md")):
        card = ModelCard.load(path)  # ModelCard.validate() asks the Hub, which tests cannot reach
        assert card.data.library_name == "timm" and card.data.license == "apache-2.0", path.name
        entry = frossl_hub.CATALOG[path.stem]
        if entry.has_weights:
            results = {r.metric_name: r.metric_value for r in card.data.eval_results}
            assert results["Linear-probe top-1"] == round(100 * entry.metrics["linear_top1"], 2)
            assert card.data.eval_results[0].dataset_split == entry.spec.eval_split
        else:
            assert card.data.eval_results is None


def test_a_simclr_card_names_simclrs_projector():
    from train.publish import render_card

    recipe = get_recipe("fashion-mnist", method="simclr")
    linear = {"knn_top1": 0.5, "epoch": 1.0, "step": 10, "protocol": "fast", "weight_decay": 0.0}
    card = render_card("m", recipe, {}, linear, {}, "float32", {"top1": 0.5, "top5": 0.9})
    assert "512 → 2048 → 256 (dropped" in card


def _front_matter(card: str) -> dict:
    return yaml.safe_load(card.split("---")[1])


@pytest.mark.parametrize("name, parent, base_model", [
    ("frossl-resnet18-stl10", "frossl-resnet18-cifar10", "frossl-hub/frossl-resnet18-cifar10"),
    ("frossl-resnet18-cifar10", "frossl-resnet18-cifar10", None),  # a chain under one name
])
def test_card_base_model_is_the_parent_unless_the_parent_is_the_model_itself(name, parent, base_model):
    from train.publish import render_card

    recipe = get_recipe("cifar10")
    config = {"init_from": {"name": parent, "source": "bundled", "sha256": "0" * 64}}
    linear = {"knn_top1": 0.5, "epoch": 1.0, "step": 10, "protocol": "fast", "weight_decay": 0.0}
    card = render_card(name, recipe, config, linear, {}, "float32", {"top1": 0.5, "top5": 0.9})
    assert _front_matter(card).get("base_model") == base_model
    assert f"**Initialised from** `{parent}`" in card  # the text names the parent either way


def test_card_says_when_a_run_changed_the_stem_of_its_parent():
    from train.publish import render_card

    recipe = get_recipe("cifar10").replace(arch="frossl_resnet18_nopool")
    config = {"init_from": {"name": "frossl-resnet18-cifar10", "source": "bundled", "sha256": "0" * 64,
                            "architecture": "frossl_resnet18"}}
    linear = {"knn_top1": 0.5, "epoch": 1.0, "step": 10, "protocol": "fast", "weight_decay": 0.0}
    card = render_card("frossl-resnet18-cifar10", recipe, config, linear, {}, "float32", {"top1": 0.5, "top5": 0.9})
    assert ("its backbone (a `frossl_resnet18`, timm resnet18 stem: 7×7 stride-2 conv1 + max-pool; "
            "this run's stem: timm resnet18 conv1 (7×7 stride 2), no max-pool)") in card


def test_no_bundled_card_names_its_own_model_as_base_model():
    for name in BUNDLED:
        card = (frossl_hub.resolve(name).folder / "README.md").read_text(encoding="utf-8")
        assert _front_matter(card).get("base_model") != frossl_hub.CATALOG[name].hf_hub_id, name


def test_card_sections_refresh_an_older_card_in_place_and_keep_its_checksums(tmp_path):
    import shutil

    from train.card_sections import refresh_card

    folder = shutil.copytree(frossl_hub.resolve("frossl-resnet18-cifar10").folder, tmp_path / "model")
    card = (folder / "README.md").read_text()
    older = re.sub(r"<!-- (chain|references) -->\n.*?<!-- /\1 -->\n\n", "", card, flags=re.S)
    (folder / "README.md").write_text(older)
    assert "<!-- chain -->" not in older and "<!-- references -->" not in older
    assert refresh_card(folder) is True
    assert (folder / "README.md").read_text() == card
    assert refresh_card(folder) is False  # idempotent
    frossl_hub.verify(folder)  # SHA256SUMS rewritten over the new card
