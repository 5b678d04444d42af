"""What a route gets and gives: its :class:`Call`, and the rendered :class:`Reply`.

Payload kinds a route may return besides a JSON-able value: :class:`RawJSON`
(bytes already serialized, shared by many answers), :class:`Page` (any
other content type: status page, metrics) and :class:`Stream` (a body sent
as it comes: server-sent events).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from backchannel.core.records import KeyRecord
from backchannel.http.fields import parse_object
from backchannel.http.request import Request

JSON = b"application/json"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

Headers = list[tuple[bytes, bytes]]


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes, the form of every response body."""
    return _dumps(value).encode()


Result = tuple[int, Any] | tuple[int, Any, dict[str, str] | Headers]
"""``(status, payload[, extra headers])``; extra headers as a dict, or already
encoded (a constant a hot route shares between its answers)."""


class RawJSON:
    """A payload that is already serialized JSON (shared by many responses)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


Route = Callable[..., Awaitable[Result]]


class Call:
    """What a route gets to know about its request."""

    __slots__ = ("_body", "_cap", "key", "request", "request_id")

    def __init__(self, request: Request, request_id: str, cap: int) -> None:
        self.request = request
        self.request_id = request_id
        self.key: KeyRecord | None = None
        self._cap = cap
        self._body: bytes | None = None

    @property
    def auth(self) -> KeyRecord:
        assert self.key is not None
        return self.key

    @property
    def query(self) -> dict[str, str]:
        return self.request.query

    async def raw_body(self) -> bytes:
        if self._body is None:
            self._body = await self.request.read_body(self._cap)
        return self._body

    async def json(self) -> dict[str, Any]:
        return parse_object(await self.raw_body())


class Page:
    """A payload that is not JSON: bytes and their content type (status pages, metrics)."""

    __slots__ = ("content_type", "data")

    def __init__(self, data: bytes, content_type: str) -> None:
        self.data = data
        self.content_type = content_type.encode("latin-1")


SendChunk = Callable[[bytes], Awaitable[None]]


class Stream:
    """A payload sent as it comes (server-sent events): ``run(send_chunk)``
    writes the body chunk by chunk and returns when the stream is over."""

    __slots__ = ("run",)
    content_type = b"text/event-stream; charset=utf-8"

    def __init__(self, run: Callable[[SendChunk], Awaitable[None]]) -> None:
        self.run = run


class Reply:
    """A rendered answer: status, body and the headers beyond the common ones."""

    __slots__ = ("body", "content_type", "extra", "status", "stream")

    def __init__(
        self,
        status: int,
        body: bytes,
        extra: Headers,
        content_type: bytes = JSON,
        stream: Stream | None = None,
    ):
        self.status = status
        self.body = body
        self.extra = extra
        self.content_type = content_type
        self.stream = stream


def encoded(headers: dict[str, str]) -> Headers:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
