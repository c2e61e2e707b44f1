"""Several worker processes as one service (serve/workers.py): the ``auto`` defaults, one
/metrics for all workers, one ONNX export, and readiness only once every worker is ready.

The end-to-end tests start the real ``python -m serve --workers 2`` on 127.0.0.1.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.multiprocess import MultiProcessCollector

import frossl_hub
from frossl_hub.backends import available_cores
from serve.app import create_app
from serve.config import ModelSpec, Settings, parse_settings
from serve.registry import inference_threads_for, workers_for
from serve.workers import (MAX_AUTO_WORKERS, READY_ENV, WorkerReadiness, auto_threads,
                           auto_workers)
from serve_helpers import assert_error, b64, png, sample, serving


# ---------------------------------------------------------------------------------------------
# the auto rule


def test_auto_is_the_default_for_workers_and_threads() -> None:
    settings = parse_settings([])
    assert (settings.workers, settings.threads) == ("auto", "auto")
    assert workers_for(settings) == auto_workers(available_cores())
    assert inference_threads_for(settings) == auto_threads(available_cores(),
                                                           workers_for(settings))


@pytest.mark.parametrize("cores, workers, threads", [(1, 1, 1), (2, 2, 1), (8, 8, 1),
                                                     (64, MAX_AUTO_WORKERS, 8)])
def test_auto_rule_fills_the_cores(cores: int, workers: int, threads: int) -> None:
    assert auto_workers(cores) == workers
    assert auto_threads(cores, auto_workers(cores)) == threads


def test_explicit_workers_split_the_cores_between_them() -> None:
    settings = parse_settings(["--workers", "3"])
    assert workers_for(settings) == 3
    assert inference_threads_for(settings) == max(1, available_cores() // 3)
    assert inference_threads_for(parse_settings(["--workers", "3", "--threads", "5"])) == 5


# ---------------------------------------------------------------------------------------------
# readiness across workers, in one process with a real ready folder


def _other_live_pid() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_readiness_waits_for_every_worker(tiny_dir: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ready = tmp_path / "ready"
    ready.mkdir()
    monkeypatch.setenv(READY_ENV, str(ready))
    settings = Settings(models=(ModelSpec("tiny", str(tiny_dir)),), workers=2)
    model = frossl_hub.load(tiny_dir)
    sibling = _other_live_pid()
    try:
        with TestClient(create_app(settings, models={"tiny": model})) as client:
            assert_error(client.get("/healthz"), 503, "models_loading")  # this worker only
            assert client.get("/livez").json()["models"] == "loading"
            (ready / str(sibling.pid)).touch()  # the other worker has loaded its models
            assert client.get("/healthz").status_code == 200
            assert client.get("/livez").json()["models"] == "ready"
        assert not (ready / str(os.getpid())).exists()  # cleared as the worker stopped
    finally:
        sibling.kill()
        sibling.wait()


def test_a_dead_workers_ready_file_does_not_count(tmp_path: Path) -> None:
    dead = _other_live_pid()
    dead.kill()
    dead.wait()
    (tmp_path / str(dead.pid)).touch()
    readiness = WorkerReadiness(tmp_path, expected=2)
    readiness.mark_ready()
    assert readiness.ready_workers() == 1 and not readiness.all_ready()
    readiness.clear()
    assert readiness.ready_workers() == 0


# ---------------------------------------------------------------------------------------------
# the real server with two workers


def _counts_per_worker(metrics_dir: Path, name: str, **labels: str) -> List[float]:
    """One worker's samples per counter_<pid>.db file of prometheus_client's folder."""
    counts = []
    for path in sorted(metrics_dir.glob("counter_*.db")):
        total = sum(s.value for metric in MultiProcessCollector.merge([str(path)])
                    for s in metric.samples
                    if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
        counts.append(total)
    return counts


@pytest.mark.slow
def test_two_workers_are_one_service(tiny_dir: Path, tmp_path: Path) -> None:
    """Ready only once both are; one ONNX export; /metrics sums both; the folder goes away."""
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    tmp.mkdir()
    env = {"FROSSL_HUB_CACHE": str(cache), "TMPDIR": str(tmp)}
    log = tmp_path / "log"
    blob = png(7)
    with serving(["--model", f"tiny={tiny_dir}", "--workers", "2"], log,
                 env=env, log_level="info") as url:
        # serving returned at the first 200 from /healthz: by then both workers had loaded
        assert len(re.findall(r"model tiny ready in", log.read_text())) == 2, log.read_text()
        state = next(tmp.glob("frossl-serve-*"))
        assert len(list((state / "ready").iterdir())) == 2
        answers = [httpx.post(url + "/v1/embeddings", json={"images": [b64(blob)]},
                              headers={"Connection": "close"}, timeout=30).status_code
                   for _ in range(40)]
        texts = [httpx.get(url + "/metrics", headers={"Connection": "close"}).text
                 for _ in range(4)]  # also time for the last request to be counted
        per_worker = _counts_per_worker(state / "metrics", "frossl_http_requests_total",
                                        route="/v1/embeddings", status="200")
    assert answers == [200] * 40
    assert len([c for c in per_worker if c > 0]) == 2, per_worker  # both served some
    for text in texts:
        assert sample(text, "frossl_http_requests_total", route="/v1/embeddings",
                      status="200") == sum(per_worker) == 40
    text = log.read_text()
    assert len(re.findall(r"exporting the model to ONNX", text)) == 1, text
    assert len(list((cache / "onnx").glob("*.onnx"))) == 1
    assert not state.exists()  # the parent removed the workers' folder
