"""One HTTP request as the API lane sees it: the ASGI scope, read lazily.

Headers are looked up in the scope's raw list (a request carries a handful),
the query string is parsed on first use, and the body is streamed from
``receive`` with a cap. Nothing here allocates per request beyond what a
route actually asks for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

import trio

from backchannel.core.errors import ApiError
from backchannel.http.hypercorn_tuning import OnLeave, client_gone_hook

DRAIN_FACTOR = 16  # an oversized body is read and dropped up to 16x the cap, then cut


class Disconnected(Exception):
    """The client went away before its answer was ready: send nothing."""


def body_too_large(cap: int) -> ApiError:
    return ApiError(413, "body_too_large", f"Request body exceeds {cap} bytes", max_body_bytes=cap)


def _text(raw: bytes) -> str:
    if b"%" in raw or b"+" in raw:
        raw = unquote_to_bytes(raw.replace(b"+", b" "))
    return raw.decode("utf-8", "replace")


def parse_query(raw: bytes) -> dict[str, str]:
    """``a=1&b=x+y`` as a dict, first value wins; what ``parse_qsl`` does, faster."""
    query: dict[str, str] = {}
    for part in raw.split(b"&"):
        if part:
            name, _, value = part.partition(b"=")
            query.setdefault(_text(name), _text(value))
    return query


class Request:
    """Read-only view of an ASGI HTTP request plus its ``receive`` channel.

    Attributes:
        method: upper-case method, as sent.
        path: percent-decoded path, as hypercorn puts it in the scope.
        must_close: set when the rest of the body was refused; the answer
            then carries ``Connection: close``.
        body_done: the body was read to its end (or refused): nothing is
            left to drain before answering.
    """

    __slots__ = (
        "_query",
        "body_done",
        "method",
        "must_close",
        "path",
        "receive",
        "scope",
        "send",
    )

    def __init__(self, scope: Any, receive: Any, send: Any = None) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.must_close = False
        self.body_done = False
        self._query: dict[str, str] | None = None

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case bytes), or None."""
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value)
        return None

    def text_header(self, name: bytes) -> str | None:
        value = self.header(name)
        return None if value is None else value.decode("latin-1")

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, first value wins; ``+`` is a space (stack-notes pitfall 7)."""
        if self._query is None:
            self._query = parse_query(self.scope.get("query_string", b""))
        return self._query

    @property
    def remote_addr(self) -> str | None:
        client = self.scope.get("client")
        return str(client[0]) if client else None

    @property
    def scheme(self) -> str:
        return str(self.scope.get("scheme", "http"))

    async def read_body(self, cap: int) -> bytes:
        """The body, streamed: at most ``cap`` bytes are kept.

        An oversized body is still read to its end (and dropped) so the
        client, which writes the whole body before it reads the answer, gets
        the 413 instead of a stalled upload. Past ``DRAIN_FACTOR`` times the
        cap (declared or sent) the rest is refused and the connection closed.

        Raises:
            ApiError: 413 ``body_too_large``.
            Disconnected: the client left mid-body.
        """
        limit = cap * DRAIN_FACTOR
        declared = self.header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            self.must_close = self.body_done = True
            raise body_too_large(cap)
        parts: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                raise Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= cap:
                parts.append(chunk)
            elif size > limit:
                self.must_close = self.body_done = True
                raise body_too_large(cap)
            if not message.get("more_body", False):
                break
        self.body_done = True
        if size > cap:
            raise body_too_large(cap)
        return b"".join(parts)

    async def wait_disconnect(self) -> None:
        """Return once the client has gone (any unread body is dropped)."""
        while (await self.receive())["type"] != "http.disconnect":
            pass

    async def park(
        self, park: Callable[[float, OnLeave], Awaitable[bool]], deadline: float
    ) -> bool:
        """``park(deadline, on_leave)`` while watching the client.

        Returns what ``park`` returns: True when woken or at the deadline,
        False when the client went away. On tuned hypercorn the server calls
        us when the connection closes (no task per waiter); on any other
        server a helper task reads ``receive`` for ``http.disconnect``.
        """
        hook = client_gone_hook(self.send)
        if hook is not None:
            return await park(deadline, hook)
        leave: list[Callable[[], None]] = []

        def on_leave(callback: Callable[[], None] | None) -> None:
            leave[:] = [callback] if callback is not None else []

        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                await self.wait_disconnect()
                for callback in leave:
                    callback()

            nursery.start_soon(watch)
            try:
                return await park(deadline, on_leave)
            finally:
                nursery.cancel_scope.cancel()
