"""`python -m frossl_hub` list / info / verify, and how every command reports an error."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from frossl_hub.catalog import CATALOG
from frossl_hub.cli import main
from helpers import one_torch_thread, publish_tiny_model  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]
NAME = "frossl-resnet18-cifar10"
UNTRAINED = "frossl-resnet18-cifar100"  # a catalog model with no weights yet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    return publish_tiny_model(tmp_path_factory.mktemp("cli") / "model")


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No $FROSSL_HUB_DIR, an empty Hugging Face cache, no network."""
    monkeypatch.delenv("FROSSL_HUB_DIR", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run(capsys, *argv: str):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_prints_every_catalog_model_with_its_timm_name_and_status(capsys):
    code, out, _ = run(capsys, "list")
    lines = out.splitlines()
    assert code == 0
    assert [line.split()[0] for line in lines] == sorted(CATALOG)
    first = CATALOG[sorted(CATALOG)[0]]
    assert first.timm_name in lines[0] and first.status in lines[0]


def test_list_filters_by_wildcard(capsys):
    _, out, _ = run(capsys, "list", "*cifar*")
    assert [line.split()[0] for line in out.splitlines()] == [
        "frossl-resnet18-cifar10", "frossl-resnet18-cifar100"]


def test_list_pretrained_shows_only_published_weights(capsys):
    code, out, _ = run(capsys, "list", "--pretrained")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == [
        n for n, e in sorted(CATALOG.items()) if e.has_weights]


def test_info_of_an_untrained_model_shows_its_entry_and_how_to_get_it(capsys):
    code, out, _ = run(capsys, "info", "cifar100")
    info = json.loads(out)
    assert code == 0
    assert info["name"] == UNTRAINED and info["status"] == "not yet trained"
    assert info["architecture"] == "frossl_resnet18_cifar"
    assert info["num_classes"] == 100 and info["input_size"] == [3, 32, 32]
    assert info["hf_hub_id"] == "frossl-hub/frossl-resnet18-cifar100"
    assert info["metrics"] == {} and info["found_at"] is None
    assert "python -m train --dataset cifar100" in info["how_to_get"]


def test_info_of_a_model_in_frossl_hub_dir_shows_its_files_and_card(published, tmp_path,
                                                                    monkeypatch, capsys):
    shutil.copytree(published, tmp_path / "hub" / NAME)
    monkeypatch.setenv("FROSSL_HUB_DIR", str(tmp_path / "hub"))
    info = json.loads(run(capsys, "info", NAME)[1])
    assert info["found_at"] == str(tmp_path / "hub" / NAME) and info["source"] == "env"
    assert info["files"] == ["README.md", "config.json", "model.safetensors"]
    assert "Tiny test model" in info["card"]


def test_info_of_a_folder_describes_the_model(published, capsys):
    code, out, _ = run(capsys, "info", str(published))
    info = json.loads(out)
    assert code == 0
    assert info["found_at"] == str(published) and info["source"] == "path"
    assert info["architecture"] == "frossl_resnet18_cifar" and info["num_classes"] == 10


def test_info_shows_the_metrics_measured_at_publication(published, tmp_path, capsys):
    from safetensors.torch import load_file

    from frossl_hub.hub import save_pretrained

    config = json.loads((published / "config.json").read_text())
    config["frossl"] = {"metrics": {"linear_top1": 0.9123, "knn_top1": 0.88}}
    card = "---\nlicense: apache-2.0\n---\n\n# FroSSL – CIFAR-10 ≈ 91 %\n"
    save_pretrained(load_file(str(published / "model.safetensors")), tmp_path / "m", config,
                    extra_files={"README.md": card})
    info = json.loads(run(capsys, "info", str(tmp_path / "m"))[1])
    assert info["card_metrics"] == {"linear_top1": 0.9123, "knn_top1": 0.88}
    assert info["card"].endswith("(FroSSL – CIFAR-10 ≈ 91 %)")


def test_verify_prints_each_checked_file(published, capsys):
    code, out, _ = run(capsys, "verify", str(published))
    assert code == 0
    assert [line.split()[-1] for line in out.splitlines()] == [
        "README.md", "config.json", "model.safetensors"]
    assert all(line.startswith("OK  ") for line in out.splitlines())


# --- errors: a message on stderr, exit code 2, no traceback -------------------------------------


def test_verify_of_a_corrupt_folder_exits_2_naming_the_file(published, tmp_path, capsys):
    folder = shutil.copytree(published, tmp_path / "model")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    code, out, err = run(capsys, "verify", str(folder))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "model.safetensors" in err and "expected sha256" in err


def test_verify_of_an_untrained_catalog_model_says_how_to_train_it(capsys):
    code, _, err = run(capsys, "verify", UNTRAINED)
    assert code == 2
    assert "Could not find weights" in err and "python -m train --dataset cifar100" in err


def test_info_of_an_unknown_name_lists_the_available_ones(capsys):
    code, _, err = run(capsys, "info", "frossl-resnet50-cifar10")
    assert code == 2
    assert "Unknown FroSSL model" in err and NAME in err


def test_a_folder_that_is_not_a_model_exits_2(tmp_path, capsys):
    code, _, err = run(capsys, "verify", str(tmp_path))
    assert code == 2 and "not a published model" in err


def test_unreadable_weights_exit_2(published, tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(published / "config.json", folder)
    (folder / "model.safetensors").write_bytes(b"not safetensors at all")
    code, _, err = run(capsys, "embed", "--model", str(folder), str(tmp_path), "--workers", "0",
                       "--out", str(tmp_path / "e.npy"), "--no-progress")
    assert code == 2 and "cannot read" in err


def test_embed_into_a_folder_path_exits_2(published, tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "taken.npy").mkdir()
    code, _, err = run(capsys, "embed", "--model", str(published), str(tmp_path / "images"),
                       "--out", str(tmp_path / "taken.npy"), "--workers", "0", "--no-progress")
    assert code == 2 and "taken.npy" in err


def test_a_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["convert", "ckpt.pt"])
    assert info.value.code == 2
    assert "--from" in capsys.readouterr().err


def test_python_m_frossl_hub_reports_errors_without_a_traceback(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"),
               OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("FROSSL_HUB_DIR", None)
    proc = subprocess.run([sys.executable, "-m", "frossl_hub", "verify", "hf-hub:org/name"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: Could not find weights for 'hf-hub:org/name'")
    assert "Traceback" not in proc.stderr
