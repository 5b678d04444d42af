"""MCP client sessions for tests: the SDK's own ``ClientSession``, over both transports."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp_types as types
import trio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client


@asynccontextmanager
async def http_session(url: str, headers: Mapping[str, str]) -> AsyncIterator[ClientSession]:
    """An initialized session with ``<url>/mcp`` sending ``headers`` on every request."""
    timeout = httpx2.Timeout(30, read=120)
    async with (
        httpx2.AsyncClient(headers=dict(headers), timeout=timeout) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def stdio_session(
    command: str, args: list[str], env: Mapping[str, str], errlog: Path
) -> AsyncIterator[ClientSession]:
    """An initialized session with a server started as ``command args`` over stdio."""
    params = StdioServerParameters(command=command, args=args, env=dict(env))
    with errlog.open("w") as log:
        async with (
            stdio_client(params, errlog=log) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def our_cli() -> tuple[str, list[str]]:
    """How to start this checkout's ``backchannel`` command."""
    return sys.executable, ["-m", "backchannel"]


def base_env() -> dict[str, str]:
    """The environment a stdio server gets besides what a test sets."""
    return {"PATH": os.environ.get("PATH", "")}


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """A successful tool call's JSON result (its text and structured content agree)."""
    result = await session.call_tool(tool, arguments)
    text = result.content[0]
    assert isinstance(text, types.TextContent)
    assert not result.is_error, text.text
    payload: dict[str, Any] = json.loads(text.text)
    if result.structured_content is not None:
        assert result.structured_content == payload
    return payload


async def fail(session: ClientSession, tool: str, **arguments: Any) -> tuple[str, str]:
    """A failed tool call as ``(code, text)``; the text names the code."""
    result = await session.call_tool(tool, arguments)
    text = result.content[0]
    assert isinstance(text, types.TextContent)
    assert result.is_error, text.text
    assert text.text.startswith("Backchannel error ["), text.text
    code = text.text.split("]", 1)[0].rsplit(" ", 1)[1]
    if result.structured_content is not None:
        assert result.structured_content["error"] == code
    return code, text.text


async def check_membership_tools(owner: ClientSession, guest: ClientSession, channel: str) -> None:
    """``request_access`` and ``invite`` on the owner's open channel.

    An open channel needs no request (``status: open``); only the owner may
    invite (contract §0.7), so the guest's ``invite`` is the server's own
    403 ``forbidden`` as an MCP tool error.
    """
    answer = await call(guest, "request_access", channel=channel, reason="let me in")
    assert answer["status"] == "open"
    code, text = await fail(guest, "invite", channel=channel)
    assert code == "forbidden"
    assert "owner" in text
    invitation = await call(owner, "invite", channel=channel)
    assert invitation["channel"]["id"] == channel


async def parked_on(http: httpx.AsyncClient, key: str, channel: str) -> None:
    """Until someone is parked on ``channel`` (its metrics count waiters)."""
    while True:
        answer = await http.get(f"/v1/channels/{channel}/metrics", headers={"X-API-Key": key})
        if answer.json()["waiters"] >= 1:
            return
        await trio.sleep(0.01)
