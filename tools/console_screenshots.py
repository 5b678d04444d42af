"""Screenshots of ``/console`` for the README, at desktop and phone width.

Starts a server on a free loopback port (in memory: nothing is written),
puts a little demo data in (a claimable ``jobs`` channel with a few tasks,
one claimed by a worker, one acked, one waiting worker; a broadcast
``news``), opens the console in Debian's headless Chromium (``make
browser``), enters the key, opens ``jobs``, claims a task with a lease from
the page and writes ``console-desktop.png`` (1366x900) and
``console-phone.png`` (390x844) to ``tools/screenshots/`` (or ``--out``).

Run: ``.venv/bin/python tools/console_screenshots.py``
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from backchannel.config import Settings
from backchannel.http.server import serve

OUT = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SIZES = {"console-desktop.png": (1366, 900), "console-phone.png": (390, 844)}
TASKS = [
    "Summarize the open issues labelled 'storage'",
    "Translate the release notes into German",
    "Review PR #41: lease heartbeats",
    "Draft the weekly status for the team",
    "Re-run the flaky TLS test 20 times and report",
]


class Client:
    def __init__(self, http: httpx.AsyncClient, key: str) -> None:
        self.http = http
        self.key = key

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        response = await self.http.request(
            method, path, json=body, headers={"X-API-Key": self.key}, **kw
        )
        response.raise_for_status()
        return response.json()


async def mint(http: httpx.AsyncClient, label: str) -> Client:
    response = await http.post("/v1/keys", json={"agent_label": label})
    response.raise_for_status()
    return Client(http, response.json()["key"])


async def demo_data(http: httpx.AsyncClient) -> tuple[Client, str, Client]:
    """The console's key, the ``jobs`` channel id, and a key that posts later."""
    lead, worker = await mint(http, "lead"), await mint(http, "worker-1")
    jobs = (await lead.call("POST", "/v1/channels", {"name": "jobs", "mode": "claimable"}))["id"]
    await lead.call("POST", "/v1/channels", {"name": "news", "mode": "broadcast"})
    posted = [
        (await lead.call("POST", f"/v1/channels/{jobs}/messages", {"content": t}))["message"]
        for t in TASKS
    ]
    done = posted[-2]["id"]
    await worker.call("POST", f"/v1/messages/{done}/claim", {"actor": None})
    await worker.call("POST", f"/v1/messages/{done}/ack", {})
    held = posted[-1]["id"]
    await worker.call("POST", f"/v1/messages/{held}/claim-with-lease", {"lease_seconds": 300})
    return lead, jobs, worker


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tempfile.mkdtemp(prefix='console-shots-')}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class Page:
    """The console in one browser; every method blocks (run it in a thread)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.driver = browser()

    def wait(self, until: Callable[[], Any]) -> Any:
        waiting = WebDriverWait(
            self.driver, 15, ignored_exceptions=[StaleElementReferenceException]
        )
        return waiting.until(lambda _: until())

    def css(self, selector: str) -> Any:
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def open(self, key: str, channel_id: str) -> None:
        self.driver.set_window_size(*SIZES["console-desktop.png"])
        self.driver.get(self.base + "/console")
        self.css("#key").send_keys(key)
        self.css("#key-form button[type=submit]").click()
        self.wait(lambda: self.css(f"#mine [data-channel='{channel_id}']").click() or True)
        self.wait(lambda: self.css("#stream-state").get_attribute("data-state") == "live")

    def claim_with_lease(self, content: str, seconds: int) -> None:
        field = self.css("#lease")
        field.clear()
        field.send_keys(str(seconds))
        for item in self.driver.find_elements(By.CSS_SELECTOR, "#messages li"):
            if content in item.text:
                item.find_element(By.CSS_SELECTOR, "[data-action=claim]").click()
        self.wait(lambda: "lease" in self.css("#messages").text)

    def shows(self, content: str) -> None:
        self.wait(lambda: content in self.css("#messages").text)

    def waiting(self) -> None:
        self.wait(lambda: self.css("[data-metric=waiters]").text == "1")

    def shoot(self, folder: Path) -> list[Path]:
        written = []
        for name, (width, height) in SIZES.items():
            metrics = {"width": width, "height": height, "deviceScaleFactor": 1}
            metrics["mobile"] = width < 600
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            self.driver.execute_script("window.scrollTo(0, 0)")
            path = folder / name
            self.driver.save_screenshot(str(path))
            written.append(path)
        return written

    def quit(self) -> None:
        self.driver.quit()


async def shoot(url: str, folder: Path) -> list[Path]:
    """Demo data in, console open, the two screenshots written."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        lead, jobs, worker = await demo_data(http)
        page = await trio.to_thread.run_sync(Page, url)
        try:
            await trio.to_thread.run_sync(page.open, lead.key, jobs)
            late = "Benchmark the stream fan-out at 1,000 readers"
            await lead.call("POST", f"/v1/channels/{jobs}/messages", {"content": late})
            await trio.to_thread.run_sync(page.shows, late)
            await trio.to_thread.run_sync(page.claim_with_lease, late, 120)
            after = await worker.call("GET", f"/v1/channels/{jobs}/messages?since=0")
            path = f"/v1/channels/{jobs}/messages?since={after['next_cursor']}&wait=30"
            async with trio.open_nursery() as parked:  # a worker waiting for work
                parked.start_soon(worker.call, "GET", path)
                await trio.to_thread.run_sync(page.waiting)
                written: list[Path] = await trio.to_thread.run_sync(page.shoot, folder)
                parked.cancel_scope.cancel()
            return written
        finally:
            await trio.to_thread.run_sync(page.quit)


async def main(folder: Path) -> None:
    settings = Settings(
        port=0,
        data_dir=Path("unused"),  # in memory: nothing is written
        sandbox_heartbeat_seconds=0,
        key_mint_limit=0,
        access_log=False,
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(
            lambda task_status: serve(settings, stop=stop, in_memory=True, task_status=task_status)
        )
        try:
            for path in await shoot(url, folder):
                print(f"{path} ({path.stat().st_size // 1024} KiB)")
        finally:
            stop.set()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the two PNGs")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    trio.run(main, out)
