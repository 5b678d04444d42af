"""The ``/mcp`` mount: the MCP SDK is loaded off the startup path.

Importing the ``mcp`` SDK costs about a second of CPU, half of a bare
server's start. :class:`McpMount` answers for ``/mcp`` from the first
request on, but builds the :class:`~backchannel.http.mcp.endpoint.McpEndpoint`
(and imports the SDK) only once serving has begun: in a worker thread
right after startup (``warm``), or on the first ``/mcp`` request, whichever
comes first. Callers that arrive while it loads wait for it; it is built
exactly once.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from backchannel.core.errors import ApiError
from backchannel.http.api import Api, ASGIApp
from backchannel.http.request import Request

if TYPE_CHECKING:
    from backchannel.http.mcp.endpoint import McpEndpoint

log = logging.getLogger(__name__)
MCP_PATHS = frozenset(("/mcp", "/mcp/"))
_MODULE = "backchannel.http.mcp.endpoint"


class McpMount:
    """Serves ``/mcp`` through an :class:`McpEndpoint` made on first need."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._endpoint: McpEndpoint | None = None
        self._loaded: trio.Event | None = None  # while loading or loaded; set when it ended
        self._nursery: trio.Nursery | None = None
        self._threaded = True
        self.module = _MODULE  # what to import (a test points it elsewhere)

    @asynccontextmanager
    async def running(self, *, warm: bool = True, threaded: bool = True) -> AsyncIterator[None]:
        """Serve ``/mcp`` while inside; on exit, end the endpoint's task group.

        ``warm``: start loading the endpoint at once, in the background.
        ``threaded``: import the SDK in a worker thread (off the event loop);
        False for in-memory runs on a MockClock, which must not use threads.
        """
        self._threaded = threaded
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if warm:
                nursery.start_soon(self._warm)
            try:
                yield
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()

    async def endpoint(self) -> McpEndpoint:
        """The endpoint, built and running; loads it once.

        Raises:
            ApiError: 503 ``unavailable`` outside :meth:`running`, or when it
                could not be loaded (logged; out of descriptors, say): the next
                caller tries again.
        """
        if self._endpoint is None:
            loading = self._loaded
            if loading is None:
                loading = self._loaded = trio.Event()
                try:
                    if self._nursery is not None:
                        await self._nursery.start(self._serve)
                except Exception:  # an SDK that cannot load must not take the server down
                    log.exception("the MCP endpoint could not be started; /mcp answers 503")
                finally:
                    if self._endpoint is None:
                        self._loaded = None  # failed: the next caller tries again
                    loading.set()
            else:
                await loading.wait()
        if self._endpoint is None:
            raise ApiError(503, "unavailable", "The MCP endpoint is not running")
        return self._endpoint

    async def _warm(self) -> None:
        with contextlib.suppress(ApiError):  # logged; a request will try again
            await self.endpoint()

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        if self._threaded:
            module = await trio.to_thread.run_sync(importlib.import_module, self.module)
        else:
            module = importlib.import_module(self.module)
        endpoint: McpEndpoint = module.McpEndpoint(self.api)
        async with endpoint.running():
            self._endpoint = endpoint
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._endpoint = None
                self._loaded = None

    def mount(self, fallback: ASGIApp) -> ASGIApp:
        """An ASGI app serving ``/mcp`` and handing every other request to ``fallback``."""

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"] in MCP_PATHS:
                await self.handle(scope, receive, send)
            else:
                await fallback(scope, receive, send)

        return asgi

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            endpoint = await self.endpoint()
        except ApiError as exc:
            request, request_id = Request(scope, receive, send), str(uuid.uuid4())
            reply = self.api.error_reply(request, request_id, exc)
            await self.api.send(send, request, request_id, reply)
            return
        await endpoint.handle(scope, receive, send)
