"""Preprocessing (any PIL mode), frossl_hub.embed, and `python -m frossl_hub embed` (1 and 2 ranks)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import frossl_hub
from frossl_hub.cli import main
from helpers import one_torch_thread, publish_tiny_model  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]

# torchvision 0.29 warns on every decode that TorchCodec will take over image decoding
pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities")]


@pytest.fixture(scope="module")
def rgb_model_dir(tmp_path_factory) -> Path:
    return publish_tiny_model(tmp_path_factory.mktemp("rgb") / "cifar10")


@pytest.fixture(scope="module")
def grey_model_dir(tmp_path_factory) -> Path:
    return publish_tiny_model(tmp_path_factory.mktemp("grey") / "fashion-mnist", "fashion-mnist")


@pytest.fixture(scope="module")
def rgb_model(rgb_model_dir):
    return frossl_hub.load(rgb_model_dir, num_classes=0)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """Real JPEG/PNG/BMP/GIF files in nested folders, in several modes, plus one corrupt file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)

    def noise(h, w, c):
        return rng.integers(0, 256, (h, w, c) if c else (h, w), dtype=np.uint8)

    (root / "cats" / "young").mkdir(parents=True)
    (root / "dogs").mkdir()
    Image.fromarray(noise(40, 50, 3)).save(root / "cats" / "a.jpg", quality=90)
    Image.fromarray(noise(32, 32, 3)).save(root / "cats" / "young" / "b.JPEG")
    Image.fromarray(noise(48, 36, 4), "RGBA").save(root / "cats" / "young" / "c.png")
    Image.fromarray(noise(30, 30, 0), "L").save(root / "dogs" / "d.png")
    Image.fromarray(rng.integers(0, 65535, (33, 31), dtype=np.uint16)).save(root / "dogs" / "e16.png")
    Image.fromarray(noise(32, 32, 3)).convert("P").save(root / "dogs" / "f.gif")
    Image.fromarray(noise(20, 64, 3)).save(root / "dogs" / "g.bmp")
    Image.fromarray(noise(36, 36, 3)).convert("CMYK").save(root / "h.jpg")
    (root / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (root / "dogs" / "notes.txt").write_text("not an image, not listed")
    return root


GOOD = ["cats/a.jpg", "cats/young/b.JPEG", "cats/young/c.png", "dogs/d.png", "dogs/e16.png",
        "dogs/f.gif", "dogs/g.bmp", "h.jpg"]  # sorted path order, broken.jpg left out


# --- get_transform ------------------------------------------------------------------------------


def test_transform_follows_the_models_pretrained_cfg(rgb_model):
    x = frossl_hub.get_transform(rgb_model)(Image.new("RGB", (64, 48), (255, 0, 0)))
    mean, std = rgb_model.pretrained_cfg["mean"], rgb_model.pretrained_cfg["std"]
    assert x.shape == (3, 32, 32)
    assert x[:, 0, 0] == pytest.approx([(1 - mean[0]) / std[0], -mean[1] / std[1], -mean[2] / std[2]],
                                       abs=1e-4)


def test_transform_accepts_a_published_folder(rgb_model_dir):
    assert frossl_hub.get_transform(rgb_model_dir)(Image.new("L", (10, 10))).shape == (3, 32, 32)


def test_transform_of_a_catalog_name_works_without_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("FROSSL_HUB_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transform = frossl_hub.get_transform("frossl-resnet18-fashion-mnist")
    assert transform(Image.new("RGB", (40, 40))).shape == (1, 28, 28)


MODES = {
    "RGB": lambda: Image.new("RGB", (40, 30), (10, 200, 30)),
    "L": lambda: Image.new("L", (40, 30), 100),
    "1": lambda: Image.new("1", (40, 30), 1),
    "P": lambda: Image.new("RGB", (40, 30), (200, 20, 30)).convert("P"),
    "RGBA": lambda: Image.new("RGBA", (40, 30), (10, 20, 30, 128)),
    "LA": lambda: Image.new("LA", (40, 30), (10, 128)),
    "CMYK": lambda: Image.new("CMYK", (40, 30), (10, 20, 30, 40)),
    "I;16": lambda: Image.fromarray(np.full((30, 40), 40000, np.uint16)),
    "I": lambda: Image.fromarray(np.full((30, 40), 40000, np.int32)),
    "F": lambda: Image.fromarray(np.full((30, 40), 0.5, np.float32)),
    "YCbCr": lambda: Image.new("RGB", (40, 30), (10, 200, 30)).convert("YCbCr"),
    "LAB": lambda: Image.new("RGB", (40, 30), (10, 200, 30)).convert("LAB"),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_any_pil_mode_feeds_an_rgb_model(rgb_model, mode):
    image = MODES[mode]()
    assert image.mode == mode
    x = frossl_hub.get_transform(rgb_model)(image)
    assert x.shape == (3, 32, 32) and torch.isfinite(x).all()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_any_pil_mode_feeds_a_greyscale_model(grey_model_dir, mode):
    x = frossl_hub.get_transform(grey_model_dir)(MODES[mode]())
    assert x.shape == (1, 28, 28) and torch.isfinite(x).all()


def test_sixteen_bit_greyscale_is_rescaled_not_clipped(grey_model_dir):
    transform = frossl_hub.get_transform(grey_model_dir)
    dark = transform(Image.fromarray(np.full((28, 28), 1000, np.uint16)))
    bright = transform(Image.fromarray(np.full((28, 28), 60000, np.uint16)))
    assert dark.mean() < bright.mean() < transform(Image.new("L", (28, 28), 255)).mean() + 1e-6


def test_transparent_pixels_are_shown_on_white(rgb_model):
    transform = frossl_hub.get_transform(rgb_model)
    clear = transform(Image.new("RGBA", (32, 32), (0, 0, 0, 0)))
    assert torch.allclose(clear, transform(Image.new("RGB", (32, 32), (255, 255, 255))))


# --- frossl_hub.embed ---------------------------------------------------------------------------


BATCH_SIZES = [(32, 32), (40, 50), (90, 17), (33, 31)]  # the input size, larger, thin, odd


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK", "I;16"])
@pytest.mark.parametrize("grey", [False, True], ids=["rgb-model", "grey-model"])
def test_batch_transform_equals_the_per_image_transform(rgb_model, grey_model_dir, mode, grey):
    from frossl_hub.inference import BatchTransform

    target = grey_model_dir if grey else rgb_model
    rng = np.random.default_rng(5)
    images = []
    for h, w in BATCH_SIZES:
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        images.append(image.convert("L").convert(mode) if mode == "I;16" else image.convert(mode))
    expected = torch.stack([frossl_hub.get_transform(target)(image) for image in images])
    torch.testing.assert_close(BatchTransform(target)(images), expected, atol=1e-6, rtol=0)


def test_embed_gives_n_by_512_float32(rgb_model):
    images = [Image.new("RGB", (32, 32), (i * 40, 0, 0)) for i in range(5)]
    out = frossl_hub.embed(rgb_model, images, batch_size=2)
    assert out.shape == (5, 512) and out.dtype == torch.float32


def test_embed_of_paths_equals_embed_of_the_opened_images(rgb_model, image_dir):
    paths = [image_dir / p for p in GOOD[:3]]
    opened = [Image.open(p) for p in paths]
    assert torch.allclose(frossl_hub.embed(rgb_model, paths), frossl_hub.embed(rgb_model, opened),
                          atol=1e-5)


def test_embed_of_a_tensor_batch_uses_it_as_preprocessed(rgb_model):
    x = torch.randn(3, 3, 32, 32)
    expected = rgb_model.forward_head(rgb_model.forward_features(x), pre_logits=True)
    assert torch.allclose(frossl_hub.embed(rgb_model, x, batch_size=2), expected, atol=1e-5)


def test_embed_batch_size_does_not_change_the_result(rgb_model):
    x = torch.randn(5, 3, 32, 32)
    assert torch.allclose(frossl_hub.embed(rgb_model, x, batch_size=1),
                          frossl_hub.embed(rgb_model, x, batch_size=4), atol=1e-5)


def test_embed_normalize_gives_unit_rows(rgb_model):
    out = frossl_hub.embed(rgb_model, torch.randn(4, 3, 32, 32), normalize=True)
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)


def test_embed_uses_pooled_features_whatever_the_head(rgb_model_dir, rgb_model):
    probe = frossl_hub.load(rgb_model_dir)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(frossl_hub.embed(probe, x), frossl_hub.embed(rgb_model, x), atol=1e-5)


def test_embed_of_no_images_is_empty(rgb_model):
    assert frossl_hub.embed(rgb_model, []).shape == (0, 512)


# --- python -m frossl_hub embed -----------------------------------------------------------------


@pytest.fixture(scope="module")
def single_process_result(rgb_model_dir, image_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("embed1") / "embeddings.npy"
    code = main(["embed", "--model", str(rgb_model_dir), str(image_dir), "--out", str(out),
                 "--batch-size", "3", "--workers", "0", "--no-progress"])
    return code, out


def test_embed_cli_writes_n_by_512_float32_npy(single_process_result):
    code, out = single_process_result
    emb = np.load(out)
    assert code == 0
    assert emb.shape == (len(GOOD), 512) and emb.dtype == np.float32


def test_embed_cli_writes_the_paths_index_in_row_order(single_process_result):
    _, out = single_process_result
    assert (out.parent / "embeddings.paths.txt").read_text().splitlines() == GOOD


def test_embed_cli_rows_equal_frossl_hub_embed(single_process_result, rgb_model, image_dir):
    _, out = single_process_result
    expected = frossl_hub.embed(rgb_model, [image_dir / p for p in GOOD]).numpy()
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)


def test_embed_cli_skips_a_corrupt_file_with_a_warning(rgb_model_dir, image_dir, tmp_path, capsys):
    code = main(["embed", "--model", str(rgb_model_dir), str(image_dir), "--out",
                 str(tmp_path / "e.npy"), "--workers", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0
    assert "warning: skipped" in err and "broken.jpg" in err
    assert "Traceback" not in err


def test_embed_cli_normalize_gives_unit_rows(rgb_model_dir, image_dir, tmp_path):
    out = tmp_path / "e.npy"
    main(["embed", "--model", str(rgb_model_dir), str(image_dir), "--out", str(out),
          "--workers", "0", "--no-progress", "--normalize"])
    np.testing.assert_allclose(np.linalg.norm(np.load(out), axis=1), 1.0, atol=1e-5)


def test_embed_cli_with_loader_workers_matches(single_process_result, rgb_model_dir, image_dir,
                                              tmp_path):
    out = tmp_path / "e.npy"
    main(["embed", "--model", str(rgb_model_dir), str(image_dir), "--out", str(out),
          "--workers", "1", "--batch-size", "4", "--no-progress"])
    np.testing.assert_allclose(np.load(out), np.load(single_process_result[1]), atol=1e-5)


def test_embed_cli_on_a_missing_folder_exits_2(rgb_model_dir, tmp_path, capsys):
    code = main(["embed", "--model", str(rgb_model_dir), str(tmp_path / "nope"), "--out",
                 str(tmp_path / "e.npy"), "--workers", "0", "--no-progress"])
    assert code == 2
    assert f"{tmp_path / 'nope'}: no such file or folder" in capsys.readouterr().err


def test_embed_cli_embeds_one_image_file(rgb_model_dir, rgb_model, image_dir, tmp_path):
    out = tmp_path / "one.npy"
    assert main(["embed", "--model", str(rgb_model_dir), str(image_dir / "h.jpg"), "--out", str(out),
                 "--workers", "0", "--no-progress"]) == 0
    np.testing.assert_allclose(np.load(out), frossl_hub.embed(rgb_model, [image_dir / "h.jpg"]).numpy(),
                               atol=1e-5)
    assert (tmp_path / "one.paths.txt").read_text() == "h.jpg\n"


# --- a folder, a missing file, a non-image: one clear error naming the path ------------------


@pytest.mark.parametrize("bad, message", [
    ("dogs", "is a folder, not an image file"),
    ("dogs/missing.png", "no such image file"),
    ("dogs/notes.txt", "is not an image PIL can read"),
    ("dogs/broken.jpg", "is a truncated or corrupt image"),
])
def test_embed_names_a_path_that_is_not_an_image(rgb_model, image_dir, bad, message):
    with pytest.raises(frossl_hub.ImageReadError, match=message) as info:
        frossl_hub.embed(rgb_model, [image_dir / "h.jpg", image_dir / bad])
    assert str(image_dir / bad) in str(info.value)


def test_embed_of_a_listed_folder_names_the_sub_folder_in_it(rgb_model, image_dir):
    with pytest.raises(frossl_hub.ImageReadError) as info:  # sorted(iterdir()) holds cats/ and dogs/
        frossl_hub.embed(rgb_model, sorted(image_dir.iterdir()))
    assert str(info.value).startswith(f"{image_dir / 'cats'} is a folder")


def _embed_cli(model_dir: Path, path: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "frossl_hub", "embed", str(path), "--model", str(model_dir),
                           "--out", str(out), "--workers", "0", "--no-progress"], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"))


def test_embed_cli_skips_non_images_in_a_folder_and_says_how_many(rgb_model_dir, image_dir, tmp_path):
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "a.jpg").write_bytes((image_dir / "h.jpg").read_bytes())
    (tmp_path / "more" / "notes.txt").write_text("not an image")
    (tmp_path / "more" / "sub").mkdir()
    (tmp_path / "more" / "sub" / "data.csv").write_text("1,2\n")
    done = _embed_cli(rgb_model_dir, tmp_path / "more", tmp_path / "e.npy")
    assert done.returncode == 0, done.stderr
    assert "(2 non-image files skipped)" in done.stdout and np.load(tmp_path / "e.npy").shape == (1, 512)


@pytest.mark.parametrize("bad, message", [
    ("missing", "no such file or folder"),
    ("dogs/notes.txt", "is not an image file"),
])
def test_embed_cli_refuses_a_path_that_is_not_an_image_naming_it(rgb_model_dir, image_dir, tmp_path, bad,
                                                                 message):
    done = _embed_cli(rgb_model_dir, image_dir / bad, tmp_path / "e.npy")
    assert done.returncode == 2 and done.stderr.startswith(f"error: {image_dir / bad}")
    assert len(done.stderr.strip().splitlines()) == 1  # one line: no warning, no traceback
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "e.npy").exists()


@pytest.mark.slow
def test_torchrun_two_ranks_merge_to_the_single_process_result(single_process_result, rgb_model_dir,
                                                              image_dir, tmp_path):
    out = tmp_path / "embeddings.npy"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "frossl_hub", "embed", "--model", str(rgb_model_dir), str(image_dir),
         "--out", str(out), "--batch-size", "2", "--workers", "0", "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "broken.jpg" in proc.stderr
    np.testing.assert_allclose(np.load(out), np.load(single_process_result[1]), atol=1e-5)
    assert (tmp_path / "embeddings.paths.txt").read_text().splitlines() == GOOD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings.npy", "embeddings.paths.txt"]
