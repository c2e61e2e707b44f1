"""Session-wide test settings: ONNX exports go to a cache of this test session, never the
user's (``$FROSSL_HUB_CACHE``, which subprocesses inherit)."""
from __future__ import annotations

import os
from typing import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def session_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    before = os.environ.get("FROSSL_HUB_CACHE")
    os.environ["FROSSL_HUB_CACHE"] = str(tmp_path_factory.mktemp("frossl-hub-cache"))
    yield
    if before is None:
        os.environ.pop("FROSSL_HUB_CACHE", None)
    else:
        os.environ["FROSSL_HUB_CACHE"] = before
