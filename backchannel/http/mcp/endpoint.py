"""The MCP server at ``/mcp``: the SDK's streamable HTTP transport, in our process.

Built on the ``mcp`` SDK's low-level ``Server`` and its
``StreamableHTTPSessionManager``, which run on anyio and therefore on trio
(hypercorn's trio worker, quart-trio): the manager's task group lives in
the server's nursery for as long as HTTP is served (:meth:`McpEndpoint.running`).

The endpoint is stateless with JSON answers: every POST is served on its
own, so no session outlives its request, a restart loses nothing, and each
request carries the caller's key. A request is authenticated before the SDK
sees it (``X-API-Key``, or ``Authorization: Bearer <key>``; 401 in our
envelope otherwise); the tools then run as that key through the API's own
pipeline (:mod:`backchannel.http.mcp.tools`), so access rules, the per-key
rate limit and idempotency are those of the REST routes. The limit counts
each API operation a tool performs; the protocol's own requests
(``initialize``, ``tools/list``) are authenticated but not counted.

A tool that fails answers an MCP tool error (``isError``) whose text is
``Backchannel error [<status> <code>]: <message>`` and whose structured
content is the API's error envelope plus ``status``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
import trio
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError

from backchannel import __version__
from backchannel.core.errors import ApiError
from backchannel.http.api import Api
from backchannel.http.hypercorn_tuning import client_gone_hook
from backchannel.http.mcp.tools import Caller, ToolError, build_tools
from backchannel.http.request import Request
from backchannel.runtime.journal import JournalFailed

READ_ONLY = frozenset(("subscribe", "await_result", "list_channels"))
IDEMPOTENT = READ_ONLY | {"ack", "heartbeat"}  # repeating them changes nothing more
_KEY = "backchannel.api_key"
INSTRUCTIONS = (
    "Backchannel hands work between agents. To delegate: post_task, then await_result "
    "with the message_id. To work: claim_next (lease_seconds for long work, then "
    "heartbeat), do the task, ack it (or release it). broadcast and subscribe share "
    "news on a channel."
)


def _bearer(value: str | None) -> str | None:
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def tool_result(result: dict[str, Any]) -> types.CallToolResult:
    text = json.dumps(result, ensure_ascii=False)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=result
    )


def tool_error(exc: ToolError) -> types.CallToolResult:
    text = f"Backchannel error [{exc.status} {exc.code}]: {exc.message}"
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content={**exc.envelope, "status": exc.status},
        is_error=True,
    )


class McpEndpoint:
    """The SDK server with our tool table, and its ASGI mount at ``/mcp``."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.tools = build_tools(api)
        self._listing = types.ListToolsResult(
            tools=[
                types.Tool(
                    name=t.name,
                    description=t.description,
                    input_schema=t.schema,
                    annotations=types.ToolAnnotations(
                        read_only_hint=t.name in READ_ONLY,
                        destructive_hint=False,
                        idempotent_hint=t.name in IDEMPOTENT,
                        open_world_hint=False,
                    ),
                )
                for t in self.tools.values()
            ]
        )
        self.server: Server[Any] = Server(
            "backchannel",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self.manager = StreamableHTTPSessionManager(
            app=self.server,
            stateless=True,
            json_response=True,
            max_request_body_size=api.settings.max_body_bytes,
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve ``/mcp`` while inside; on exit, cancel whatever is still running."""
        async with self.manager.run():
            yield

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        """Authenticate the request, then let the SDK's transport serve it."""
        request = Request(scope, receive, send)
        raw = request.text_header(b"x-api-key") or _bearer(request.text_header(b"authorization"))
        try:
            self.api.authenticate(raw)
        except ApiError as exc:
            request_id = str(uuid.uuid4())
            reply = self.api.error_reply(request, request_id, exc)
            await self.api.send(send, request, request_id, reply)
            return
        await self._serve_while_connected({**scope, _KEY: raw}, receive, send)

    async def _serve_while_connected(self, scope: Any, receive: Any, send: Any) -> None:
        """Let the SDK serve the request; stop it (and its tool call) if the client leaves.

        The SDK's JSON answer path does not watch for ``http.disconnect``, so
        a tool parked in a wait (``await_result``, up to an hour) would
        outlive a client that gave up. On tuned hypercorn the server tells
        us when the connection closes; elsewhere a helper task reads
        ``receive`` for ``http.disconnect`` once the SDK has read the body.
        """
        with trio.CancelScope() as serving:
            hook = client_gone_hook(send)
            if hook is not None:
                hook(serving.cancel)
                try:
                    await self.manager.handle_request(scope, receive, send)
                finally:
                    hook(None)
                return
            body_read = trio.Event()

            async def reading(*args: Any) -> Any:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    body_read.set()
                return message

            async def watch() -> None:
                await body_read.wait()
                while (await receive())["type"] != "http.disconnect":
                    pass
                serving.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await self.manager.handle_request(scope, reading, send)
                nursery.cancel_scope.cancel()

    async def _list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return self._listing

    async def _call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tool = self.tools.get(params.name)
        if tool is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        scope = ctx.request.scope if ctx.request is not None else {}
        caller = Caller(self.api, scope.get(_KEY), scope.get("client"))
        try:
            return tool_result(await tool.run(caller, dict(params.arguments or {})))
        except ToolError as exc:
            return tool_error(exc)
        except JournalFailed:
            message = "Writes are unavailable: storage failed"
            return tool_error(ToolError(503, {"error": "unavailable", "message": message}))
