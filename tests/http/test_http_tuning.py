"""``BACKCHANNEL_HTTP_TUNING``: all hypercorn patches or none, and the same wire.

Patches are process-wide, so the switch is tested in fresh processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.conftest import Agent, serving

_SWITCH = r"""
import json, sys
from hypercorn.protocol.h11 import H11Protocol
from backchannel.config import Settings
from backchannel.http import hypercorn_pin
from backchannel.http.server import prepare_hypercorn

results = {}
def attempt(name, settings):
    try:
        prepare_hypercorn(settings)
        results[name] = "ok"
    except RuntimeError as exc:
        results[name] = str(exc)
    results[name + " patched"] = hypercorn_pin.hypercorn_patched()

real = hypercorn_pin.installed_hypercorn
hypercorn_pin.installed_hypercorn = lambda: "0.19.0"
attempt("newer pin", Settings())
hypercorn_pin.installed_hypercorn = real
stock = H11Protocol._close_stream
del H11Protocol._close_stream
attempt("attribute gone", Settings())
H11Protocol._close_stream = stock
attempt("stock", Settings(http_tuning=False))
attempt("tuned", Settings())
attempt("stock after tuned", Settings(http_tuning=False))
print(json.dumps(results))
"""


def test_tuning_is_all_or_nothing_and_off_means_stock() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SWITCH], capture_output=True, text=True, timeout=60, check=True
    )
    results = json.loads(done.stdout)
    assert "hypercorn 0.19.0 is not 0.18.0" in results["newer pin"]
    assert "BACKCHANNEL_HTTP_TUNING=off" in results["newer pin"]
    assert results["newer pin patched"] == []
    assert "H11Protocol._close_stream gone" in results["attribute gone"]
    assert results["attribute gone patched"] == []
    assert (results["stock"], results["stock patched"]) == ("ok", [])
    assert results["tuned"] == "ok"
    assert len(results["tuned patched"]) == 7
    assert "already patched hypercorn" in results["stock after tuned"]


def _shape(value: Any) -> Any:
    """A JSON value with every id, key, time and count that may differ replaced by "*"."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if isinstance(value, str) and (
        any(c.isdigit() for c in value) or (" " not in value and len(value) >= 12)
    ):
        return "*"  # ids, keys, times, URLs
    if isinstance(value, float) or (isinstance(value, int) and value > 10**6):
        return "*"
    return value


async def _exchanges(url: str) -> list[Any]:
    """A fixed series of requests; what each answer looks like, ids and times aside."""
    seen: list[Any] = []
    volatile = re.compile(r"127\.0\.0\.1:\d+|[0-9a-f]{8}-[0-9a-f-]{27}")
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        minted = await http.post("/v1/keys", json={"agent_label": "wire"})
        agent = Agent(http, minted.json()["key"], minted.json()["key_id"], "wire")
        woken: list[httpx.Response] = []

        async def wait_for_two(cursor: str) -> None:
            params = {"cursor": cursor, "wait": 10}
            woken.append(await agent.get("/v1/channels/wire/messages", params=params))

        answers = [
            minted,
            await agent.post("/v1/channels", {"name": "wire", "mode": "claimable"}),
            posted := await agent.post("/v1/channels/wire/messages", {"content": "one"}),
        ]
        async with trio.open_nursery() as nursery:  # a parked long-poll, woken by a post
            nursery.start_soon(wait_for_two, posted.json()["next_cursor"])
            await trio.sleep(0.3)
            answers.append(await agent.post("/v1/channels/wire/messages", {"content": "two"}))
        answers += [
            *woken,
            await agent.get("/v1/channels/wire/messages", params={"wait": "0.2"}),
            await agent.get("/v1/channels/wire/messages", params={"cursor": "9" * 12, "wait": 0.2}),
            await agent.post("/v1/channels/wire/messages", content=b"{not json"),
            await agent.get("/v1/no-such-route"),
            await http.get("/health"),
            await http.get("/llms.txt"),
        ]
    for answer in answers:
        headers = sorted(
            (k, volatile.sub("*", v) if k != "content-length" else "n")
            for k, v in answer.headers.items()
            if k not in ("date", "x-request-id", "x-ratelimit-reset", "traceparent")
        )
        if answer.headers.get("content-type", "").startswith("application/json"):
            body = _shape(answer.json())
        else:
            body = volatile.sub("*", answer.text)
        seen.append((answer.status_code, headers, body))
    return seen


async def test_stock_hypercorn_answers_like_tuned_hypercorn(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path / "in-process") as server:
        here = await _exchanges(server.url)
    env = {**os.environ, "BACKCHANNEL_HTTP_TUNING": "off"}
    env.update(BACKCHANNEL_RATE_LIMIT="0", BACKCHANNEL_KEY_MINT_LIMIT="0")
    env.update(BACKCHANNEL_SANDBOX_HEARTBEAT_SECONDS="0", BACKCHANNEL_SNAPSHOT_INTERVAL_SECONDS="0")
    command = [sys.executable, "-m", "backchannel", "serve", "--port", "0"]
    command += ["--data-dir", str(tmp_path / "stock")]
    process = await trio.lowlevel.open_process(command, env=env, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        log = b""
        with trio.fail_after(30):
            while b"serving on" not in log:
                chunk = await process.stderr.receive_some(4096)
                assert chunk, log.decode()
                log += chunk
        assert b"stock hypercorn 0.18.0" in log
        url = re.search(rb"serving on (http://\S+)", log)
        assert url is not None
        there = await _exchanges(url.group(1).decode())
    finally:
        process.terminate()
        with trio.fail_after(15):
            await process.wait()
        if process.stderr is not None:
            await process.stderr.aclose()
    for index, (stock, tuned) in enumerate(zip(there, here, strict=True)):
        assert stock == tuned, index
