"""The demo page at `/`, in a real headless Chromium, against a real `python -m serve`.

The server runs the bundled CIFAR-10 model (with its gallery) on 127.0.0.1; Chromium is
driven by selenium. The page is given a real CIFAR-10 test image through its file input.
Set FROSSL_DEMO_SCREENSHOT=docs/demo.png to also save the README's screenshot.

Skipped only when the Debian packages chromium and chromium-driver are absent.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional
from urllib.parse import urlparse

import httpx
import pytest

import frossl_hub

from helpers import extract_cifar10_test
from serve_helpers import sample

REPO = Path(__file__).resolve().parents[1]

from benchmarks import _common  # noqa: E402  (server start-up helpers shared with the benchmark)

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")
WAIT_S = 180  # generous: the machine running the tests may be busy
START_S = 600  # the server imports torch and embeds the gallery first
API_KEY = "page-test-key-5f2c"
SCREENSHOT_ENV = "FROSSL_DEMO_SCREENSHOT"  # where to also save the README's screenshot


# ---------------------------------------------------------------------------------------------
# a real server, a real browser


def start_server(log_dir: Path, api_key: Optional[str] = None) -> Iterator[str]:
    """`python -m serve` with the bundled default model on a free 127.0.0.1 port."""
    log_path = log_dir / "server.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.pop("FROSSL_HUB_DIR", None)
    env.pop("FROSSL_API_KEY", None)
    if api_key:
        env["FROSSL_API_KEY"] = api_key
    args = ["--workers", "1", "--threads", "1", "--log-level", "warning"]
    with _common.running_server(args, env, log_path, timeout=START_S) as url:
        yield url
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from start_server(tmp_path_factory.mktemp("page-server"))


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from start_server(tmp_path_factory.mktemp("keyed-server"), API_KEY)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip(f"needs the Debian packages chromium and chromium-driver ({CHROMIUM}, "
                    f"{CHROMEDRIVER}): apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
                                  "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def cifar_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CIFAR-10 test image (JPEG, as in the official test split): the first one that is
    not in the bundled gallery, which holds the first 40 of each class."""
    root = extract_cifar10_test(tmp_path_factory.mktemp("cifar") / "cifar-10-jpeg", limit=41)
    return root / "test" / "airplane" / "0040.jpg"


# ---------------------------------------------------------------------------------------------
# page helpers


def wait_for(driver: Any, script: str, what: str) -> Any:
    """Poll a JavaScript expression until it is truthy; fail naming ``what`` and the page's
    error text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(
            lambda d: d.execute_script("return " + script))
    except TimeoutException:
        error = driver.execute_script("return document.getElementById('error').textContent")
        status = driver.execute_script("return document.getElementById('status').textContent")
        pytest.fail(f"timed out waiting for {what}; page error {error!r}, status {status!r}")


def open_page(driver: Any, url: str) -> None:
    driver.get_log("performance")  # drop what earlier tests logged
    driver.get(url + "/")


def wait_for_models(driver: Any) -> None:
    wait_for(driver, "!document.getElementById('model').disabled && "
             "document.querySelectorAll('#card-numbers dd').length >= 6", "the model list and card")


def choose_file(driver: Any, path: Path) -> None:
    driver.find_element("id", "file").send_keys(str(path))


RESULT_READY = ("!document.getElementById('result').hidden && "
                "document.querySelectorAll('#top5 li').length === 5 && "
                "Array.from(document.querySelectorAll('#neighbours img'))"
                ".filter(i => i.complete && i.naturalWidth > 0).length === 8")


def requests_sent(driver: Any) -> List[Dict[str, Any]]:
    """Every request the page sent (Chrome's performance log): url, method, headers."""
    sent = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            sent.append(message["params"]["request"])
    return sent


def off_host(urls: List[str], server: str) -> List[str]:
    """The URLs that went to another host than the server (data: and blob: stay in the page)."""
    return [u for u in urls if urlparse(u).scheme not in ("data", "blob")
            and urlparse(u).netloc != urlparse(server).netloc]


def texts(driver: Any, selector: str) -> List[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)",
        selector)


def predict(url: str, path: Path, headers: Optional[Dict[str, str]] = None) -> httpx.Response:
    with open(path, "rb") as f:
        return httpx.post(url + "/v1/predictions", files={"file": (path.name, f)},
                          headers=headers, timeout=WAIT_S)


# ---------------------------------------------------------------------------------------------
# the page with a real CIFAR-10 image


@pytest.fixture(scope="module")
def shown(browser: Any, server: str, cifar_image: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """The page after choosing the image: what it shows, the requests it sent, a screenshot."""
    open_page(browser, server)
    wait_for_models(browser)
    wait_for(browser, "Array.from(document.querySelectorAll('#plots img'))"
             ".filter(i => i.complete && i.naturalWidth > 0).length === 3", "the card's plots")
    choose_file(browser, cifar_image)
    wait_for(browser, RESULT_READY, "the top-5 list and 8 neighbour images")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(max(height + 140, 700), 2400))
    screenshot = tmp_path_factory.mktemp("screenshot") / "demo.png"
    browser.save_screenshot(str(screenshot))
    if os.environ.get(SCREENSHOT_ENV):
        target = Path(os.environ[SCREENSHOT_ENV])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target)
    browser.set_window_size(1280, 900)
    return dict(
        top5=texts(browser, "#top5 li .label"),
        scores=texts(browser, "#top5 li .score"),
        bars=browser.execute_script("return Array.from(document.querySelectorAll('#top5 .fill'))"
                                    ".map(e => e.getBoundingClientRect().width)"),
        neighbour_labels=texts(browser, "#neighbours .label"),
        similarities=texts(browser, "#neighbours .similarity"),
        alts=browser.execute_script("return Array.from(document.images).map(i => i.alt)"),
        model_view=browser.execute_script(
            "const i = document.getElementById('model-view'); "
            "return [i.naturalWidth, i.naturalHeight, !document.getElementById('model-view-figure').hidden]"),
        latency=browser.find_element("id", "latency").text,
        card=texts(browser, "#card-numbers dd"),
        requests=requests_sent(browser),
        screenshot=screenshot,
    )


def test_page_shows_the_top5_with_score_bars_and_8_labelled_neighbours(shown) -> None:
    assert len(shown["top5"]) == 5 and all(shown["top5"])
    assert all(s.endswith("%") for s in shown["scores"])
    assert shown["bars"] == sorted(shown["bars"], reverse=True) and shown["bars"][0] > 0
    labels = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
              "truck"}
    assert len(shown["neighbour_labels"]) == 8 and set(shown["neighbour_labels"]) <= labels
    similarities = [float(s) for s in shown["similarities"]]
    assert similarities == sorted(similarities, reverse=True) and similarities[0] <= 1


def test_page_top1_is_what_the_predictions_api_says(shown, server, cifar_image) -> None:
    api = predict(server, cifar_image).json()["data"][0]["predictions"]
    assert shown["top5"] == [p["label"] for p in api]


def test_page_shows_the_image_as_the_model_sees_it_and_the_latency(shown) -> None:
    assert shown["model_view"] == [32, 32, True]
    assert "predictions" in shown["latency"] and " ms" in shown["latency"]


def test_page_shows_the_cards_headline_numbers(shown) -> None:
    m = frossl_hub.CATALOG["frossl-resnet18-cifar10"].metrics
    assert shown["card"][:3] == [f"{100 * m[k]:.2f}%" for k in ("linear_top1", "knn_top1",
                                                               "random_init_linear_top1")]
    assert shown["card"][4] == "AMD EPYC, 2 threads"


def test_page_states_a_chained_models_training_in_all(shown) -> None:
    m = frossl_hub.CATALOG["frossl-resnet18-cifar10"].metrics  # bundled: two chained runs
    assert shown["card"][3] == (f"{m['total_train_minutes']:g} min, {m['total_epochs']:g} epochs "
                                f"over {m['chained_runs']} chained runs")


def test_every_image_has_alt_text(shown) -> None:
    assert shown["alts"] and all(alt.strip() for alt in shown["alts"])


def test_no_request_left_127_0_0_1(shown, server) -> None:
    urls = [r["url"] for r in shown["requests"]]
    assert any(u.endswith("/v1/neighbours") for u in urls), urls
    assert off_host(urls, server) == []


def test_the_screenshot_is_saved(shown) -> None:
    from PIL import Image

    with Image.open(shown["screenshot"]) as image:
        assert image.format == "PNG" and image.width >= 1000


def test_a_non_image_file_shows_the_apis_error_text(browser, server, tmp_path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    expected = predict(server, notes).json()["error"]["message"]
    open_page(browser, server)
    wait_for_models(browser)
    choose_file(browser, notes)
    wait_for(browser, "!document.getElementById('error').hidden", "the error message")
    assert browser.find_element("id", "error").text == expected
    assert "is not an image" in expected


def test_the_page_fits_a_phone_width_screen(browser, server, cifar_image) -> None:
    browser.set_window_size(390, 844)
    try:
        open_page(browser, server)
        wait_for_models(browser)
        choose_file(browser, cifar_image)
        wait_for(browser, RESULT_READY, "the results")
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    finally:
        browser.set_window_size(1280, 900)
    assert overflow <= 0


def test_the_file_input_is_reachable_with_the_keyboard(browser, server) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    open_page(browser, server)
    wait_for_models(browser)
    focused = []
    for _ in range(3):  # the API docs link, the model picker, the file input
        ActionChains(browser).send_keys(Keys.TAB).perform()
        focused.append(browser.switch_to.active_element.get_attribute("id"))
    assert focused[1:] == ["model", "file"]


REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"  # ReDoc's "by Redocly" badge image


@pytest.mark.parametrize("path, rendered, allowed_off_host", [
    ("/docs", "document.querySelectorAll('.opblock').length", []),  # a block per operation
    ("/redoc", "document.querySelectorAll('[data-section-id^=\"operation/\"]').length",
     [REDOC_LOGO]),  # offline only this decorative badge stays blank
])
def test_the_api_docs_render_every_operation_offline(browser, server, path, rendered,
                                                     allowed_off_host) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    spec = httpx.get(server + "/openapi.json").json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    browser.get_log("performance")
    browser.get(server + path)
    WebDriverWait(browser, WAIT_S, poll_frequency=0.2).until(
        lambda d: d.execute_script("return " + rendered) >= operations)
    urls = [r["url"] for r in requests_sent(browser)]
    assert [u for u in off_host(urls, server) if u not in allowed_off_host] == []


@pytest.mark.parametrize("keyed", [False, True], ids=["no-key", "api-key"])
def test_the_api_docs_offer_authorize_only_with_an_api_key(browser, request, keyed) -> None:
    """Swagger UI shows its "Authorize" button when the schema has a security scheme."""
    from selenium.webdriver.support.ui import WebDriverWait

    url = request.getfixturevalue("keyed_server" if keyed else "server")
    browser.get(url + "/docs")
    WebDriverWait(browser, WAIT_S, poll_frequency=0.2).until(
        lambda d: d.execute_script("return document.querySelectorAll('.opblock').length") > 0)
    buttons = browser.execute_script(
        "return document.querySelectorAll('.auth-wrapper .authorize').length")
    assert buttons == (1 if keyed else 0)


# ---------------------------------------------------------------------------------------------
# how the service answers for the page


def test_the_page_and_its_files_are_served_and_counted_in_metrics(server) -> None:
    page = httpx.get(server + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = httpx.get(server + "/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    metrics = httpx.get(server + "/metrics").text
    for route in ("/", "/static/app.js"):
        assert sample(metrics, "frossl_http_requests_total", route=route, method="GET",
                      status="200") >= 1


def test_the_page_is_open_but_the_api_needs_the_key(keyed_server) -> None:
    assert httpx.get(keyed_server + "/").status_code == 200
    assert httpx.get(keyed_server + "/static/app.js").status_code == 200
    assert httpx.get(keyed_server + "/v1/models").status_code == 401


# ---------------------------------------------------------------------------------------------
# the service with an API key


def test_page_asks_for_the_key_and_sends_it_as_a_bearer_header(browser, keyed_server,
                                                                cifar_image) -> None:
    open_page(browser, keyed_server)
    wait_for(browser, "!document.getElementById('key-panel').hidden", "the API key prompt")
    key_input = browser.find_element("id", "api-key")
    key_input.send_keys("wrong-key")
    browser.find_element("css selector", "#key-form button").click()
    wait_for(browser, "document.getElementById('error').textContent === 'invalid API key.'",
             "the API's message for a wrong key")
    browser.find_element("id", "api-key").send_keys(API_KEY)
    browser.find_element("css selector", "#key-form button").click()
    wait_for_models(browser)
    choose_file(browser, cifar_image)
    wait_for(browser, RESULT_READY, "the results")
    assert browser.find_element("id", "key-panel").is_displayed() is False
    sent = requests_sent(browser)
    api_calls = [r for r in sent if urlparse(r["url"]).path.startswith("/v1/")]
    assert {urlparse(r["url"]).path for r in api_calls} >= {"/v1/models", "/v1/predictions",
                                                           "/v1/neighbours"}
    last = {urlparse(r["url"]).path: r for r in api_calls}  # the calls after the right key
    for path in ("/v1/predictions", "/v1/neighbours"):
        headers = {k.lower(): v for k, v in last[path]["headers"].items()}
        assert headers.get("authorization") == f"Bearer {API_KEY}", path
    assert not any(API_KEY in r["url"] for r in sent)
