"""The pages ``/`` and ``/humans`` (contract §2.12), in HTTP and in a real browser.

The browser is Debian's headless ``chromium`` driven by selenium through
``chromium-driver`` (``make browser`` installs both). A page must load with
no console error and no CSP violation under the headers of §3.15, and its
script (``/humans.js``, same origin) must fill the live figures from the
JSON named by ``data-source``. Screenshots go to the test's ``tmp_path``.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import Server, serving
from tests.http.test_headers import CSP, assert_common

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGES = ["/", "/humans"]
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
_HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
_ASSET = re.compile(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]+)""", re.I)
_WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


async def test_pages_are_small_self_contained_html_with_the_common_headers(
    server: Server,
) -> None:
    for path in PAGES:
        response = await server.http.get(path)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert_common(response, server)
        page = response.text
        assert len(response.content) < 16_000
        assert page.startswith("<!doctype html>")
        assert server.url in page
        assert "$" not in page  # every placeholder was filled
        assert not _INLINE_SCRIPT.search(page), "inline scripts are blocked by script-src 'self'"
        assert not _HANDLER.search(page), "inline event handlers are blocked too"
        for url in _ASSET.findall(page):
            assert url.startswith(("/", "#", "data:")), f"{path} loads {url} from elsewhere"
        assert '<script src="/humans.js" defer></script>' in page
        assert 'data-source="/status"' in page
    script = await server.http.get("/humans.js")
    assert script.status_code == 200
    assert script.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert script.headers["Content-Security-Policy"] == CSP
    assert "fetch(" in script.text
    assert "data-copy" in script.text


async def test_pages_follow_the_minting_setting(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, public_minting_enabled=False) as server:
        for path in PAGES:
            page = (await server.http.get(path)).text
            assert "Public minting is closed on this instance" in page
    async with serving(nursery, tmp_path / "open") as server:
        for path in PAGES:
            page = (await server.http.get(path)).text
            assert "Anyone may mint a key" in page


@dataclass
class Visit:
    severe: list[str]
    violations: list[str]
    live: dict[str, str]
    state: str | None
    copied: str
    title: str


def _browser(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,1200",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def _visit(driver: webdriver.Chrome, url: str, screenshot: Path) -> Visit:
    """Load ``url``, wait for its live figures, click a copy button, screenshot."""
    driver.get(url)
    box = driver.find_element(By.ID, "live")
    WebDriverWait(driver, 10).until(lambda _: box.get_attribute("data-state") is not None)
    live = {
        node.get_attribute("data-live") or "": node.text
        for node in box.find_elements(By.CSS_SELECTOR, "[data-live]")
    }
    button = driver.find_element(By.CSS_SELECTOR, "button[data-copy]")
    button.click()
    WebDriverWait(driver, 5).until(lambda _: button.text != "Copy")
    copied = button.text
    driver.save_screenshot(str(screenshot))
    logs: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return Visit(
        severe=[entry["message"] for entry in logs if entry["level"] == "SEVERE"],
        violations=list(driver.execute_script("return window.__csp")),
        live=live,
        state=box.get_attribute("data-state"),
        copied=copied,
        title=driver.title,
    )


def _browse(base: str, folder: Path) -> dict[str, Visit]:
    driver = _browser(folder / "profile")
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _WATCH_CSP})
        return {
            path: _visit(driver, base + path, folder / f"{path.strip('/') or 'index'}.png")
            for path in PAGES
        }
    finally:
        driver.quit()


@pytest.mark.timeout(120)
async def test_pages_load_in_chromium_without_errors_or_csp_violations(
    server: Server, tmp_path: Path
) -> None:
    assert shutil.which(CHROMIUM), "run `make browser`"
    assert shutil.which(CHROMEDRIVER), "run `make browser`"
    visits = await trio.to_thread.run_sync(_browse, server.url, tmp_path)
    for path, visit in visits.items():
        assert visit.violations == [], (path, visit.violations)
        assert visit.severe == [], (path, visit.severe)
        # humans.js fetched /status and filled the figures, counters included
        assert visit.state == "live", path
        assert visit.live["status"] == "operational"
        assert visit.live["channels"] == "1"  # the sandbox
        assert visit.live["live_messages"] == "0"
        assert visit.live["public_minting_enabled"] == "yes"
        assert visit.live["instance_kind"] == server.settings.instance_kind
        assert visit.copied in ("Copied", "Selected: press Ctrl+C"), visit.copied
        assert visit.title.startswith("Backchannel")
        screenshot = tmp_path / f"{path.strip('/') or 'index'}.png"
        assert screenshot.read_bytes().startswith(b"\x89PNG")
        assert screenshot.stat().st_size > 10_000
