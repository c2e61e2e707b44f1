"""A headless Chromium (selenium) on the demo page of a running server: what its top-k list
shows for one image. Skips when the Debian packages chromium and chromium-driver are absent."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
WAIT_S = 180  # generous: the machine running the tests may be busy


def page_top_labels(url: str, image: Path, profile: Path) -> List[str]:
    """The labels the page's top-k list shows once ``image`` is chosen in its file input."""
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip(f"needs the Debian packages chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER})")
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + (f"--user-data-dir={profile / 'chromium'}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.get(url + "/")
        ready = ("!document.getElementById('model').disabled && "
                 "!document.getElementById('result').hidden && "
                 "document.querySelectorAll('#top5 li .label').length > 0")
        WebDriverWait(driver, WAIT_S, 0.2).until(
            lambda d: d.execute_script("return !document.getElementById('model').disabled"))
        driver.find_element("id", "file").send_keys(str(image))
        try:
            WebDriverWait(driver, WAIT_S, 0.2).until(lambda d: d.execute_script("return " + ready))
        except TimeoutException:
            error = driver.execute_script("return document.getElementById('error').textContent")
            pytest.fail(f"the page showed no predictions; its error text: {error!r}")
        return driver.execute_script(
            "return Array.from(document.querySelectorAll('#top5 li .label')).map(e => e.textContent)")
    finally:
        driver.quit()
