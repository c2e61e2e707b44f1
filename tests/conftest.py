"""Session-wide test settings: ONNX exports go to a cache of this test session, never the
user's (``$FROSSL_HUB_CACHE``, which subprocesses inherit)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
import torch

import frossl_hub


@pytest.fixture(scope="session", autouse=True)
def session_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    before = os.environ.get("FROSSL_HUB_CACHE")
    os.environ["FROSSL_HUB_CACHE"] = str(tmp_path_factory.mktemp("frossl-hub-cache"))
    yield
    if before is None:
        os.environ.pop("FROSSL_HUB_CACHE", None)
    else:
        os.environ["FROSSL_HUB_CACHE"] = before


# One tiny published CIFAR-10 model (random weights) for the whole session, and a real
# `python -m serve` of it with an API key per test module (the OpenAI and V2 protocol tests).

@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from serve_helpers import publish_tiny
    return publish_tiny(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_dir: Path) -> torch.nn.Module:
    return frossl_hub.load(tiny_dir)


@pytest.fixture(scope="module")
def keyed_server(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the service; the key is serve_helpers.API_KEY, at most 4 images a request."""
    from serve_helpers import API_KEY, serving
    with serving(["--model", f"tiny={tiny_dir}"],
                 tmp_path_factory.mktemp("server") / "server.log",
                 {"FROSSL_API_KEY": API_KEY, "FROSSL_SERVE_MAX_IMAGES": "4"}) as url:
        yield url
