"""scripts/gpu_run.sh, the one command for a lent GPU, dry-run on the CPU (SMOKE=1).

The same script, archive handling, benchmark rows, budget-sized training, probe and publish
as on an H100/H200, on a tiny CIFAR-10-layout archive and a few steps.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import frossl_hub
from formats import write_cifar_jpegs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    tmp = tmp_path_factory.mktemp("gpu")
    write_cifar_jpegs(tmp / "cifar-10-jpeg", train_per_class=4, test_per_class=2)
    archive = tmp / "cifar-10-jpeg.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(tmp / "cifar-10-jpeg", arcname="cifar-10-jpeg")
    shutil.rmtree(tmp / "cifar-10-jpeg")
    env = {**os.environ, "SMOKE": "1", "OUT": str(tmp / "out"), "ARCHIVE": str(archive),
           "WORK": str(tmp / "work"), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_run.sh")], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=600)
    done.out = tmp / "out"  # type: ignore[attr-defined]
    return done


@pytest.mark.skipif(shutil.which("bash") is None, reason="gpu_run.sh needs bash")
def test_dry_run_succeeds_and_logs_the_benchmark_rows(smoke_run: subprocess.CompletedProcess) -> None:
    assert smoke_run.returncode == 0, smoke_run.stdout[-3000:] + smoke_run.stderr[-3000:]
    log = (smoke_run.out / "gpu_run.log").read_text()
    assert "# train throughput: cifar10" in log and "# train throughput: stl10-shaped" in log
    assert "2  trainer:" in log and "epochs (warm-up a tenth)" in log
    assert '"top1"' in log  # the probe's linear.json


@pytest.mark.skipif(shutil.which("bash") is None, reason="gpu_run.sh needs bash")
def test_dry_run_returns_at_most_8_files_of_at_most_16_mib(smoke_run: subprocess.CompletedProcess) -> None:
    """What the device tool brings back from $OUT."""
    files = [p for p in smoke_run.out.rglob("*") if p.is_file()]
    assert 2 <= len(files) <= 8 and all(p.stat().st_size <= 16 * 2**20 for p in files)


@pytest.mark.skipif(shutil.which("bash") is None, reason="gpu_run.sh needs bash")
def test_dry_run_parts_join_into_a_loadable_small_stem_model(smoke_run: subprocess.CompletedProcess,
                                                             tmp_path: Path) -> None:
    parts = sorted(smoke_run.out.glob("published.tar.part-*"))
    (tmp_path / "published.tar").write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(tmp_path / "published.tar") as tar:
        tar.extractall(tmp_path, filter="data")
    model = frossl_hub.load(tmp_path / "published")
    assert model.pretrained_cfg["architecture"] == "frossl_resnet18_cifar" and model.num_classes == 10
