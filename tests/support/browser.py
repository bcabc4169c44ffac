"""Headless Chromium (Debian's chromium and chromium-driver, installed by `scripts/stack.sh
install`) driven with Selenium, for tests that read what a page renders."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def chromium(window: tuple[int, int] = (1600, 1000)) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.fail("chromium and chromedriver are not installed: run scripts/stack.sh install")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={window[0]},{window[1]}"):  # fmt: skip
        options.add_argument(argument)
    # Both paths are given, so Selenium does not try to download a driver.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def page_text(driver) -> str:
    return driver.execute_script("return document.body ? document.body.innerText : ''")


def wait_for_text(driver, wanted: list[str], timeout: float = 60.0, reload_every: float | None = None,
                  ready: Callable[[str], bool] | None = None) -> str:  # fmt: skip
    """The page's rendered text once every string in ``wanted`` is in it (and ``ready`` holds);
    fails with what was rendered. ``reload_every`` seconds the page is loaded again (for data
    that arrives while the test waits)."""
    deadline = time.monotonic() + timeout
    last_reload = time.monotonic()
    text = ""
    while time.monotonic() < deadline:
        text = page_text(driver)
        if all(w in text for w in wanted) and (ready is None or ready(text)):
            return text
        if reload_every and time.monotonic() - last_reload > reload_every:
            driver.refresh()
            last_reload = time.monotonic()
        time.sleep(0.5)
    missing = [w for w in wanted if w not in text]
    pytest.fail(f"{driver.current_url}: after {timeout}s the page lacks {missing}; it shows:\n{text[:3000]}")


def screenshot(driver, path: Path) -> Path:
    driver.save_screenshot(str(path))
    print(f"\nscreenshot: {path}")
    return path
