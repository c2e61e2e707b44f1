"""The demo page's search panel, in a real headless Chromium, against a real `python -m serve
--index`: choose an image, see the nearest images of the user's own index as thumbnails with
their scores. Without --index the panel stays hidden.

Skipped only when the Debian packages chromium and chromium-driver (or Fashion-MNIST) are absent.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from benchmarks import _common
from frossl_hub.index import BuildOptions, build_index
from index_helpers import MODEL, fashion_folder
from test_page import REPO, START_S, browser, open_page, requests_sent, off_host, texts, wait_for  # noqa: F401

pytestmark = pytest.mark.slow
K = 12


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("page-search")
    root = fashion_folder(base / "photos", 30)
    build_index(root, MODEL, base / "idx", BuildOptions(workers=0, progress=False))
    return base / "idx"


def serve(log_dir: Path, *args: str) -> Iterator[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.pop("FROSSL_HUB_DIR", None)
    env.pop("FROSSL_API_KEY", None)
    log = log_dir / "server.log"
    with _common.running_server(["--model", MODEL, *args, "--threads", "1", "--log-level",
                                 "warning"], env, log, timeout=START_S) as url:
        yield url
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def server(indexed, tmp_path_factory) -> Iterator[str]:
    yield from serve(tmp_path_factory.mktemp("search-server"), "--index", f"photos={indexed}")


@pytest.fixture(scope="module")
def shown(browser: Any, server: str, indexed: Path) -> dict:
    open_page(browser, server)
    wait_for(browser, "!document.getElementById('search-panel').hidden && "
             "!document.getElementById('search-index').disabled", "the search panel")
    query = Path(indexed).parent / "photos" / "a" / "00007.png"
    browser.find_element("id", "search-file").send_keys(str(query))
    wait_for(browser, f"Array.from(document.querySelectorAll('#search-hits img'))"
             f".filter(i => i.complete && i.naturalWidth > 0).length === {K}", "12 thumbnails")
    return dict(paths=texts(browser, "#search-hits .path"),
                scores=[float(s) for s in texts(browser, "#search-hits .similarity")],
                status=browser.execute_script("return document.getElementById('search-status').textContent"),
                sizes=browser.execute_script("return Array.from(document.querySelectorAll('#search-hits img'))"
                                             ".map(i => [i.naturalWidth, i.naturalHeight])"),
                urls=[r["url"] for r in requests_sent(browser)])


def test_the_panel_shows_the_image_itself_first_with_its_score(shown):
    assert shown["paths"][0] == "a/00007.png"
    assert shown["scores"][0] == pytest.approx(1.0, abs=0.01)
    assert shown["scores"] == sorted(shown["scores"], reverse=True) and len(shown["paths"]) == K


def test_thumbnails_are_the_indexed_files(shown):
    assert shown["sizes"] == [[28, 28]] * K  # the stored PNGs, as they are on disk


def test_the_status_names_the_index(shown):
    assert "photos" in shown["status"] and "of 30 images" in shown["status"]


def test_every_request_stays_on_the_service(shown, server):
    assert any("/v1/search" in u for u in shown["urls"]) and any("/items/" in u for u in shown["urls"])
    assert off_host(shown["urls"], server) == []


def test_without_an_index_the_panel_stays_hidden(browser, tmp_path_factory):
    for url in serve(tmp_path_factory.mktemp("plain-server")):
        open_page(browser, url)
        wait_for(browser, "!document.getElementById('model').disabled", "the model list")
        wait_for(browser, "search.loaded", "the index list")
        assert browser.execute_script("return document.getElementById('search-panel').hidden")
