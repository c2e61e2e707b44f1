"""The service given what is not an image or not a model, as users give it: a file upload to a
real `python -m serve` on 127.0.0.1, and a --model path on the command line. Each answer is
one clear error naming the file, never a 500 or a traceback."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from serve_helpers import png, run_cli, serving


@pytest.fixture(scope="module")
def server(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("paths-server") / "server.log"
    with serving(["--model", str(tiny_dir), "--threads", "1"], log) as url:
        yield url


@pytest.mark.parametrize("name, blob, status, code", [
    ("notes.txt", b"just some text, not pixels", 415, "unsupported_image"),
    ("broken.jpg", b"\xff\xd8\xff\xe0 definitely not a jpeg", 422, "corrupt_image"),
    ("empty.png", b"", 422, "empty_image"),
])
def test_an_uploaded_file_that_is_not_an_image_is_refused_by_name(server, name, blob, status, code):
    upload = [("file", ("cat.png", png(1), "image/png")), ("file", (name, blob, "application/octet-stream"))]
    response = httpx.post(f"{server}/v1/embeddings", files=upload, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and f"image 1 ({name!r})" in error["message"]


@pytest.mark.parametrize("kind", ["missing", "folder", "file"])
def test_a_model_path_that_is_not_a_model_is_one_error_naming_it(tmp_path, kind):
    path = tmp_path / {"missing": "no-such-model", "folder": "photos", "file": "notes.txt"}[kind]
    if kind == "folder":
        path.mkdir()
        (path / "cat.png").write_bytes(png(2))
    elif kind == "file":
        path.write_text("not a model")
    done = run_cli("--model", str(path), "--port", "0")
    assert done.returncode == 2
    assert done.stderr.startswith("python -m serve: error: ") and str(path) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1  # no traceback
