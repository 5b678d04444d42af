"""Shared fixtures: a real server on a loopback port, and a small API client."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from backchannel.config import Settings, load_settings
from backchannel.http.server import serve


def test_settings(data_dir: Path, **changes: Any) -> Settings:
    """Settings for tests: port 0, no limiter noise, no background heartbeat.

    ``BACKCHANNEL_HTTP_TUNING`` is honoured, so ``make test`` can run a
    subset on stock hypercorn (``make pytest-stock``).
    """
    base = Settings(
        http_tuning=load_settings(
            {"BACKCHANNEL_HTTP_TUNING": os.environ.get("BACKCHANNEL_HTTP_TUNING", "")}
        ).http_tuning,
        host="127.0.0.1",
        port=0,
        data_dir=data_dir,
        rate_limit=0,
        key_mint_limit=0,
        sandbox_heartbeat_seconds=0,
        invitation_lookup_limit=0,
        snapshot_interval_seconds=0,
        graceful_timeout_seconds=1.0,
    )
    return base.replace(**changes)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


class Agent:
    """An httpx client bound to one minted key."""

    def __init__(self, http: httpx.AsyncClient, key: str, key_id: str, label: str) -> None:
        self.http = http
        self.key = key
        self.key_id = key_id
        self.label = label

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"X-API-Key": self.key}
        if extra:
            headers.update(extra)
        return headers

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        headers = self._headers(kw.pop("headers", None))
        return await self.http.get(path, headers=headers, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        headers = self._headers(kw.pop("headers", None))
        return await self.http.post(
            path, json=json if json is not None else {}, headers=headers, **kw
        )

    async def patch(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        headers = self._headers(kw.pop("headers", None))
        return await self.http.patch(
            path, json=json if json is not None else {}, headers=headers, **kw
        )

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        headers = self._headers(kw.pop("headers", None))
        return await self.http.delete(path, headers=headers, **kw)

    async def put(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        headers = self._headers(kw.pop("headers", None))
        return await self.http.put(path, json=json, headers=headers, **kw)

    async def channel(
        self, name: str = "jobs", mode: str = "claimable", **fields: Any
    ) -> dict[str, Any]:
        response = await self.post("/v1/channels", {"name": name, "mode": mode, **fields})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def send(self, channel_id: str, content: str = "work", **fields: Any) -> dict[str, Any]:
        response = await self.post(
            f"/v1/channels/{channel_id}/messages", {"content": content, **fields}
        )
        assert response.status_code == 201, response.text
        message: dict[str, Any] = response.json()["message"]
        return message


class Server:
    """A running server plus a way to mint agents against it."""

    def __init__(self, url: str, http: httpx.AsyncClient, settings: Settings) -> None:
        self.url = url
        self.http = http
        self.settings = settings
        self._count = 0

    async def agent(self, label: str | None = None) -> Agent:
        self._count += 1
        label = label or f"agent-{self._count}"
        response = await self.http.post("/v1/keys", json={"agent_label": label})
        assert response.status_code == 201, response.text
        body = response.json()
        return Agent(self.http, body["key"], body["key_id"], label)


class Running:
    """A server started by :func:`start_server`; ``await stopped()`` shuts it down cleanly."""

    def __init__(self, url: str, stop: trio.Event, done: trio.Event) -> None:
        self.url = url
        self._stop = stop
        self._done = done

    async def stopped(self) -> None:
        self._stop.set()
        with trio.fail_after(15):
            await self._done.wait()


async def start_server(
    nursery: trio.Nursery, settings: Settings, *, in_memory: bool = False
) -> Running:
    """Serve ``settings`` in ``nursery`` until :meth:`Running.stopped`.

    ``in_memory``: no files and so no worker threads, as tests on a
    ``MockClock`` with autojump need (style.md 10).
    """
    stop = trio.Event()
    done = trio.Event()

    async def run(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await serve(settings, stop=stop, in_memory=in_memory, task_status=task_status)
        finally:
            done.set()

    url: str = await nursery.start(run)
    return Running(url, stop, done)


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Server]:
    settings = test_settings(tmp_path / "data")
    running = await start_server(nursery, settings)
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        yield Server(running.url, http, settings)
    await running.stopped()


@asynccontextmanager
async def serving(
    nursery: trio.Nursery, tmp_path: Path, *, in_memory: bool = False, **changes: Any
) -> AsyncIterator[Server]:
    """A server with custom settings for one test, stopped cleanly at the end."""
    settings = test_settings(tmp_path / "data", **changes)
    running = await start_server(nursery, settings, in_memory=in_memory)
    try:
        async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
            yield Server(running.url, http, settings)
    finally:
        await running.stopped()


async def raw_http(url: str, request: bytes) -> bytes:
    """Send ``request`` as raw bytes on a new connection; return all the server
    sends until it closes the connection (within 5 s)."""
    port = int(url.rsplit(":", 1)[1])
    received = b""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request)
            while chunk := await stream.receive_some(65_536):
                received += chunk
    return received


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The standard error envelope of contract §3.1, with exact status and code.

    Error answers carry no ``X-RateLimit-Remaining``, ``Link`` or idempotency
    headers (§3.1).
    """
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    uuid.UUID(body["request_id"])
    assert body["documentation_url"].endswith("/docs/errors.md#" + code.replace("_", "-"))
    for header in ("X-RateLimit-Remaining", "Link", "X-Idempotent-Replay", "X-Idempotency-Source"):
        assert header not in response.headers, header
    return body
