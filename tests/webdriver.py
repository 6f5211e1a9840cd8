"""Debian's Chromium driven through chromedriver and Selenium, for the tests that use the
file page as people do: click, type, pick files, read what the page shows.

Screenshots go to ``test-artifacts/screenshots`` in the checkout (``HOODY_ARTIFACTS``
overrides the folder), so that a run leaves pictures of what it saw.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from conftest import require
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

ARTIFACTS = Path(os.environ.get("HOODY_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
WAIT = 60.0  # seconds: liveness only, for a loaded machine


class Page:
    """One headless Chromium window of a given width."""

    def __init__(self, profile: Path, downloads: Path, width: int) -> None:
        require("chromium", "chromedriver")
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in (
            "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}",
        ):  # fmt: skip
            options.add_argument(arg)
        self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        self.width = width
        # (a window cannot be narrower than 500 px; the device metrics can)
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 500},
        )
        downloads.mkdir(parents=True, exist_ok=True)
        self.downloads = downloads
        self.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )

    def open(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, condition: Callable[[], Any], what: str) -> Any:
        """The first true value of ``condition``, or fail saying ``what`` was awaited."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                value = condition()
            except Exception:  # (the page is reloading: try again)
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                self.shot("timeout")
                raise AssertionError(f"waited in vain for {what}")
            time.sleep(0.1)

    def names(self) -> list[str]:
        """The names the listing shows, in order (the rows the filter left visible)."""
        return list(
            self.js(
                "return Array.from(document.querySelectorAll('#listing tr[data-name]'))"
                ".filter(r => !r.hidden).map(r => r.dataset.name)"
            )
        )

    def row_action(self, name: str, action: str) -> None:
        """Open the row's menu and click one of its actions."""
        row = self.find(f'#listing tr[data-name="{name}"]')
        row.find_element(By.CSS_SELECTOR, "summary").click()
        row.find_element(By.CSS_SELECTOR, f'button[data-act="{action}"]').click()

    def overflows(self) -> bool:
        """Whether the page scrolls sideways."""
        return bool(self.js("return document.documentElement.scrollWidth > window.innerWidth"))

    def shot(self, name: str) -> Path:
        """Keep a screenshot of the page as it is now."""
        folder = ARTIFACTS / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9._-]", "-", name)
        path = folder / f"{safe}-{self.width}px.png"
        self.driver.save_screenshot(str(path))
        return path

    def close(self) -> None:
        self.driver.quit()


@contextlib.contextmanager
def opened(folder: Path, width: int) -> Iterator[Page]:
    """A page of ``width`` px, its profile and downloads in ``folder``; closed on exit."""
    page = Page(folder / "profile", folder / "downloads", width)
    try:
        yield page
    finally:
        page.close()
