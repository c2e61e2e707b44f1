"""Search your images at the command line: `python -m frossl_hub index build|add|info|search`.

Real Fashion-MNIST PNG folders, the bundled Fashion-MNIST model, FAISS; every bad input
gets one `error:` line (exit 2) and leaves nothing half-written.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frossl_hub.cli import main
from frossl_hub.index import (IndexCorruptError, IndexLockedError, build_index, open_index,
                              update_index, write_lock)
from helpers import one_torch_thread, publish_tiny_model  # noqa: F401  (fixture)
from index_helpers import MODEL, copy_index, fashion_folder

REPO = Path(__file__).resolve().parents[1]
N = 40
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(capsys, *args: str):
    rc = main(["index", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return fashion_folder(tmp_path_factory.mktemp("images"), N, broken=True)


@pytest.fixture(scope="module")
def index_dir(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built") / "idx"
    assert main(["index", "build", str(folder), "--model", MODEL, "--out", str(out),
                 "--workers", "0", "--no-progress"]) == 0
    return out


def test_build_writes_a_checked_index_of_the_readable_images(index_dir, folder):
    index = open_index(index_dir)
    m = index.manifest
    assert (m.count, m.dim, m.skipped, m.factory, m.dtype) == (N, 512, 1, "Flat", "float16")
    assert m.recall_at_10 == 1.0 and m.model == MODEL and len(m.weights_sha256) == 64
    assert index.paths == sorted(p.relative_to(folder).as_posix() for p in folder.rglob("0*.png"))
    norms = np.linalg.norm(np.asarray(index.embeddings, np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)
    assert isinstance(index.embeddings, np.memmap)
    assert sorted(p.name for p in index_dir.iterdir()) == ["CURRENT", "g000001"]
    assert not list(index_dir.parent.glob(".idx.*staging")) and not list(index_dir.parent.glob(".idx.new"))


def test_search_finds_the_image_itself_first(index_dir, folder, capsys):
    query = folder / "a" / "00007.png"
    rc, out, _ = cli(capsys, "search", str(index_dir), str(query), "-k", "3", "--json")
    assert rc == 0
    [result] = json.loads(out)
    assert [h["path"] for h in result["hits"]][0] == "a/00007.png"
    assert result["hits"][0]["score"] == pytest.approx(1.0, abs=1e-2)
    assert len(result["hits"]) == 3 and result["hits"][0]["score"] >= result["hits"][2]["score"]


def test_a_query_of_another_size_and_mode_is_preprocessed_like_the_files(index_dir, folder,
                                                                         tmp_path, capsys):
    query = tmp_path / "big.jpg"
    Image.open(folder / "b" / "00010.png").convert("RGB").resize((96, 80)).save(query, quality=95)
    rc, out, _ = cli(capsys, "search", str(index_dir), str(query), "-k", "1", "--json")
    assert rc == 0 and json.loads(out)[0]["hits"][0]["path"] == "b/00010.png"


@pytest.mark.parametrize("k", ["0", "-3"])
def test_k_of_zero_or_less_is_refused(index_dir, folder, k, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["index", "search", str(index_dir), str(folder / "a" / "00001.png"), "-k", k])
    assert exc.value.code == 2
    assert "must be a positive number of hits" in capsys.readouterr().err


def test_k_larger_than_the_index_is_refused(index_dir, folder, capsys):
    rc, _, err = cli(capsys, "search", str(index_dir), str(folder / "a" / "00001.png"), "-k",
                     str(N + 1))
    assert rc == 2 and f"k: must be in 1..{N}" in err and "Traceback" not in err


def test_an_unreadable_query_is_one_error(index_dir, folder, capsys):
    rc, _, err = cli(capsys, "search", str(index_dir), str(folder / "broken.png"))
    assert rc == 2 and "cannot read query image" in err


def test_info_describes_the_index(index_dir, capsys):
    rc, out, _ = cli(capsys, "info", str(index_dir))
    info = json.loads(out)
    assert rc == 0 and info["count"] == N and info["factory"] == "Flat" and info["generation"] == "g000001"


def test_an_empty_folder_is_refused_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    rc, _, err = cli(capsys, "build", str(tmp_path / "empty"), "--model", MODEL, "--out",
                     str(tmp_path / "idx"), "--no-progress")
    assert rc == 2 and "holds no image files" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_strict_refuses_unreadable_files_and_writes_nothing(folder, tmp_path, capsys):
    rc, _, err = cli(capsys, "build", str(folder), "--model", MODEL, "--out", str(tmp_path / "idx"),
                     "--strict", "--workers", "0", "--no-progress")
    assert rc == 2 and "1 of 41 files cannot be read (--strict)" in err and "broken.png" in err
    assert [p.name for p in tmp_path.iterdir()] == [".idx.lock"]


def test_building_over_an_existing_index_is_refused(index_dir, folder, capsys):
    rc, _, err = cli(capsys, "build", str(folder), "--model", MODEL, "--out", str(index_dir))
    assert rc == 2 and "already exists" in err and "index add" in err


def test_a_bad_factory_fails_before_embedding(folder, tmp_path, capsys):
    rc, _, err = cli(capsys, "build", str(folder), "--model", MODEL, "--out", str(tmp_path / "i"),
                     "--factory", "IVFbanana")
    assert rc == 2 and "IVFbanana" in err and not (tmp_path / "i").exists()


def test_a_truncated_embeddings_file_is_caught_at_open(index_dir, tmp_path, capsys):
    bad = copy_index(index_dir, tmp_path / "idx")
    emb = bad / "g000001" / "embeddings.npy"
    emb.write_bytes(emb.read_bytes()[:-512])
    rc, _, err = cli(capsys, "info", str(bad))
    assert rc == 2 and "embeddings.npy does not match its checksum" in err


def test_a_hand_edited_manifest_is_caught_at_open(index_dir, tmp_path):
    bad = copy_index(index_dir, tmp_path / "idx")
    manifest = bad / "g000001" / "index.json"
    manifest.write_text(manifest.read_text().replace('"count": 40', '"count": 41'))
    with pytest.raises(IndexCorruptError, match="index.json does not match its checksum"):
        open_index(bad)


def test_a_folder_that_is_no_index_is_one_error(tmp_path, capsys):
    rc, _, err = cli(capsys, "info", str(tmp_path))
    assert rc == 2 and "is not a search index" in err


def test_searching_with_another_models_weights_is_refused(index_dir, folder, tmp_path, capsys):
    other = publish_tiny_model(tmp_path / "other", "fashion-mnist")
    rc, _, err = cli(capsys, "search", str(index_dir), str(folder / "a" / "00001.png"),
                     "--model", str(other))
    assert rc == 2 and "was built with other weights" in err


def test_add_embeds_only_new_and_changed_files_and_drops_removed_ones(index_dir, folder, tmp_path):
    root = tmp_path / "images"
    import shutil
    shutil.copytree(folder, root)
    idx = tmp_path / "idx"
    build_index(root, MODEL, idx)  # fresh: the copy has new mtimes
    before = open_index(idx)
    (root / "a" / "00001.png").unlink()
    fashion_folder(root / "new", 1, start=500)
    changed = root / "b" / "00002.png"
    Image.open(root / "b" / "00004.png").save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    report = update_index(idx, root)
    assert (report["embedded"], report["removed"], report["kept"]) == (2, 1, N - 2)
    after = open_index(idx)
    assert after.generation.name == "g000002" and len(after) == N
    assert "a/00001.png" not in after.paths and "new/b/00500.png" in after.paths
    query = np.asarray(after.embeddings[after.paths.index("b/00002.png")], np.float32)[None]
    assert {h.path for h in after.search(query, 2)[0]} == {"b/00002.png", "b/00004.png"}
    # the generation a reader opened before the update still answers from its own files
    assert before.search(np.asarray(before.embeddings[:1], np.float32), 1)[0][0].id == 0


def test_add_with_nothing_changed_embeds_nothing(index_dir, folder, tmp_path):
    idx = copy_index(index_dir, tmp_path / "idx")
    report = update_index(idx, folder)
    assert (report["embedded"], report["removed"], report["kept"]) == (0, 0, N)


HOLD = ("import sys; from frossl_hub.index import write_lock\n"
        "with write_lock(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()\n")


def test_two_writers_cannot_write_one_index(index_dir, folder, tmp_path, capsys):
    idx = copy_index(index_dir, tmp_path / "idx")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(idx)], cwd=REPO, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        rc, _, err = cli(capsys, "add", str(idx), str(folder), "--no-progress")
        assert rc == 2 and f"another process (pid {holder.pid}) is writing the index" in err
    finally:
        holder.communicate("", timeout=60)
    with write_lock(idx):  # released when the holder exits
        pass
    assert open_index(idx).generation.name == "g000001"


def test_the_lock_is_exclusive_within_one_process_too(tmp_path):
    with write_lock(tmp_path / "idx"):
        with pytest.raises(IndexLockedError):
            with write_lock(tmp_path / "idx"):
                pass
