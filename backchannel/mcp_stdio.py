"""``backchannel mcp``: the Backchannel MCP tools over stdio.

For MCP clients that start a command (Claude Code, Cursor, ...). This
process is a bridge built on the ``mcp`` SDK (on trio): an MCP server on
stdin/stdout whose ``tools/list`` and ``tools/call`` are forwarded, as the
caller's key, to the ``/mcp`` endpoint of the Backchannel server at
``BACKCHANNEL_BASE_URL`` (default ``http://127.0.0.1:8080``). The tools, their
schemas and errors are therefore exactly the server's, and ``await_result``
waits on the server's actor instead of polling from here.

Why a bridge rather than a second implementation over REST: no REST route
waits for an acknowledgement, so a REST-backed ``await_result`` could only
poll; and one implementation cannot drift from another.

The key: ``BACKCHANNEL_API_KEY``; else the key file (``BACKCHANNEL_KEY_FILE``,
default ``~/.config/backchannel/key``, the one the published
``backchannel-mcp`` uses); else, at first use (the first ``tools/list`` or
tool call), a key is minted with ``POST /v1/keys`` (label
``BACKCHANNEL_AGENT_LABEL``, default ``mcp-<host>-<pid>``) and saved to the
key file with mode 0600.

Each tool call opens its own short MCP session with the (stateless) server
over one pooled HTTP client, so a server restart between calls is harmless.
A server that cannot be reached is a tool error ``unavailable``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import trio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from backchannel import __version__

log = logging.getLogger("backchannel.mcp")

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_KEY_FILE = Path("~/.config/backchannel/key")
_TIMEOUT = httpx2.Timeout(30, read=3700)  # await_result may wait up to 3600 s


class KeyUnavailable(Exception):
    """No key was configured and none could be minted."""

    def __init__(self, status: int, envelope: dict[str, Any]) -> None:
        super().__init__(envelope.get("message", "cannot mint a key"))
        self.status = status
        self.envelope = envelope


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception inside nested exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _error(status: int, code: str, message: str) -> types.CallToolResult:
    """A tool error shaped like the server's own."""
    return types.CallToolResult(
        content=[
            types.TextContent(type="text", text=f"Backchannel error [{status} {code}]: {message}")
        ],
        structured_content={"error": code, "message": message, "status": status},
        is_error=True,
    )


class Bridge:
    """Forwards MCP tool listing and calls to ``<base_url>/mcp`` as one key."""

    def __init__(
        self, base_url: str, api_key: str | None, key_file: Path, label: str | None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key_file = key_file
        self.label = label or f"mcp-{socket.gethostname().split('.')[0][:32]}-{os.getpid()}"
        self._key = api_key or self._saved_key()
        self._minting = trio.Lock()
        self._http: httpx2.AsyncClient | None = None

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Bridge:
        key_file = Path(env.get("BACKCHANNEL_KEY_FILE") or DEFAULT_KEY_FILE).expanduser()
        return cls(
            env.get("BACKCHANNEL_BASE_URL") or DEFAULT_BASE_URL,
            env.get("BACKCHANNEL_API_KEY") or None,
            key_file,
            env.get("BACKCHANNEL_AGENT_LABEL") or None,
        )

    def _saved_key(self) -> str | None:
        try:
            return self.key_file.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    async def key(self) -> str:
        """The key to act as, minting and saving one on first use.

        Raises:
            KeyUnavailable: the server refused to mint one.
        """
        async with self._minting:  # concurrent first calls mint one key, not several
            if self._key is None:
                http = self._client()
                response = await http.post(
                    f"{self.base_url}/v1/keys", json={"agent_label": self.label}
                )
                body = response.json()
                if response.status_code != 201:
                    raise KeyUnavailable(response.status_code, body)
                self._key = str(body["key"])
                self._save(self._key)
                log.info("minted a Backchannel key for label %s", self.label)
            return self._key

    def _save(self, key: str) -> None:
        try:
            self.key_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(key)
        except OSError as exc:
            log.warning("could not save the key to %s: %s", self.key_file, exc)

    def _client(self) -> httpx2.AsyncClient:
        if self._http is None:
            self._http = httpx2.AsyncClient(timeout=_TIMEOUT)
        return self._http

    @asynccontextmanager
    async def upstream(self, key: str) -> AsyncIterator[ClientSession]:
        """An initialized MCP session with the server's ``/mcp``, as ``key``."""
        http = self._client()
        http.headers["X-API-Key"] = key
        async with (
            streamable_http_client(f"{self.base_url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session

    async def list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        try:
            async with self.upstream(await self.key()) as session:
                return await session.list_tools()
        except MCPError:
            raise
        except KeyUnavailable as exc:
            raise MCPError(types.INTERNAL_ERROR, f"Backchannel: {exc}") from None
        except Exception as exc:
            message = f"cannot reach Backchannel at {self.base_url}/mcp: {_leaf(exc)!r}"
            raise MCPError(types.INTERNAL_ERROR, message) from None

    async def call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            key = await self.key()
        except KeyUnavailable as exc:
            envelope = exc.envelope
            return _error(exc.status, str(envelope.get("error")), str(envelope.get("message")))
        except Exception as exc:
            message = f"cannot reach Backchannel at {self.base_url}: {_leaf(exc)!r}"
            return _error(503, "unavailable", message)
        try:
            async with self.upstream(key) as session:
                return await session.call_tool(params.name, params.arguments)
        except MCPError:
            raise
        except Exception as exc:
            return await self._diagnose(key, exc)

    async def _diagnose(self, key: str, exc: BaseException) -> types.CallToolResult:
        """Why ``/mcp`` failed, as a tool error: the key's own error if it has one.

        The SDK reports a refused request only as "an error response"; asking
        ``/v1/keys/me`` tells a bad key (401 ``unauthorized``) from a server
        that cannot be reached or has no ``/mcp``.
        """
        try:
            response = await self._client().get(
                f"{self.base_url}/v1/keys/me", headers={"X-API-Key": key}
            )
        except httpx2.HTTPError as probe:
            message = f"cannot reach Backchannel at {self.base_url}: {_leaf(probe)!r}"
            return _error(503, "unavailable", message)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            if isinstance(body, dict) and "error" in body:
                return _error(response.status_code, str(body["error"]), str(body.get("message")))
        message = f"{self.base_url}/mcp failed (a Backchannel server with /mcp?): {_leaf(exc)!r}"
        return _error(503, "unavailable", message)

    async def serve(self) -> None:
        """Serve MCP on stdin/stdout until stdin closes."""
        server: Server[Any] = Server(
            "backchannel",
            version=__version__,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )
        try:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
        finally:
            if self._http is not None:
                with trio.CancelScope(shield=True):
                    await self._http.aclose()


def run(env: Mapping[str, str]) -> int:
    """The ``backchannel mcp`` command."""
    trio.run(Bridge.from_environment(env).serve)
    return 0
