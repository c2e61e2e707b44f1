"""`torchrun --nproc-per-node 2 -m frossl_hub index build`: each gloo process embeds and adds
its share to a copy of the trained IVF index; rank 0 merges the shards with FAISS's
merge_from. The result answers like the one-process build of the same folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from frossl_hub.cli import main
from frossl_hub.index import open_index
from helpers import one_torch_thread  # noqa: F401  (fixture)
from index_helpers import MODEL, fashion_folder

REPO = Path(__file__).resolve().parents[1]
FACTORY = "IVF4,PQ16x4"  # 4 lists, 4-bit PQ: trainable on a few dozen vectors
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_two_gloo_processes_build_ivf_shards_and_merge_them(tmp_path):
    folder = fashion_folder(tmp_path / "images", 48)
    single, two = tmp_path / "single", tmp_path / "two"
    assert main(["index", "build", str(folder), "--model", MODEL, "--out", str(single),
                 "--factory", FACTORY, "--workers", "0", "--no-progress"]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "frossl_hub", "index", "build", str(folder), "--model", MODEL, "--out", str(two),
         "--factory", FACTORY, "--batch-size", "16", "--workers", "0", "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = open_index(single), open_index(two)
    assert (b.manifest.shards, a.manifest.shards) == (2, 1)
    assert b.paths == a.paths and len(b) == 48 and b.faiss_index.ntotal == 48
    np.testing.assert_allclose(np.asarray(b.embeddings, np.float32),
                               np.asarray(a.embeddings, np.float32), atol=2e-3)
    queries = np.asarray(a.embeddings, np.float32)
    ids_a, ids_b = a.search_arrays(queries, 5)[1], b.search_arrays(queries, 5)[1]
    assert (ids_b[:, 0] == np.arange(48)).all()  # every image finds itself first
    assert (ids_a == ids_b).mean() >= 0.95
    assert sorted(p.name for p in tmp_path.iterdir()) == [".single.lock", ".two.lock", "images",
                                                          "single", "two"]
