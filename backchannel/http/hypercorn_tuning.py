"""Adjustments to hypercorn 0.18's trio worker, each measured on this stack.

Hypercorn is pinned (pyproject.toml); every patch checks that what it
replaces still exists and refuses to start otherwise, so an upgrade cannot
silently undo one. :func:`tune_hypercorn` applies the ones that only make
hypercorn cheaper (the benchmark's framework floor applies them too);
:func:`answer_malformed_http_in_our_envelope` is about our error format.

All or nothing: ``hypercorn_pin.check_hypercorn`` runs before any patch is
applied and refuses a hypercorn other than the validated release or one
missing any attribute a patch (here or in ``hypercorn_recycle``) replaces,
so a raised pin can never leave the server half-tuned. ``BACKCHANNEL_HTTP_TUNING=off``
(``Settings.http_tuning``) applies none of them: stock hypercorn, the same
answers on the wire, slower (``server.py`` says what differs).
"""

from __future__ import annotations

import json
import math
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h11
import trio

from backchannel.config import Settings
from backchannel.http.hypercorn_answer import install_whole_responses


def somaxconn() -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text().strip())
    except (OSError, ValueError):
        return 4096


class _ReadTimeoutOnly:
    """Stands in for hypercorn's per-connection keep-alive timer.

    Hypercorn (0.18, trio worker) cancels one task and starts another on
    every request to time idle keep-alive connections: ~20 % of the server's
    time when 10,000 long-polls are answered at once. Under quart-trio that
    timer does not even fire after a connection's first request
    (stack-notes pitfall 1). This class keeps hypercorn's ``SingleTask``
    interface and only notes when the connection went idle (opened, or its
    answer sent: ``restart``) or busy (a request's headers arrived:
    ``stop``); the connection's read loop (:func:`_idle_deadline_in_reads`)
    turns that into the deadline of the read it is waiting on anyway, so
    it costs nothing per request.
    """

    __slots__ = ("idle_since",)

    def __init__(self) -> None:
        self.idle_since: float | None = None

    async def restart(self, task_group: object, action: object) -> None:
        self.idle_since = trio.current_time()

    def mark_idle(self) -> None:
        """``restart`` without the await (``hypercorn_answer``'s recycle)."""
        self.idle_since = trio.current_time()

    async def stop(self) -> None:
        self.idle_since = None


def _use_read_timeout_only() -> None:
    """Install :class:`_ReadTimeoutOnly` in hypercorn's trio TCP server."""
    from hypercorn.trio import tcp_server

    if not hasattr(tcp_server, "TrioSingleTask"):
        raise RuntimeError("hypercorn changed: tcp_server.TrioSingleTask is gone; review server.py")
    tcp_server.TrioSingleTask = _ReadTimeoutOnly


def _idle_deadline_in_reads() -> None:
    """Close a connection idle for ``keep_alive_timeout``, headers trickling in or not.

    Hypercorn's read loop waits on each read for at most ``read_timeout``;
    here the wait also ends when the connection has been idle (no request
    whose headers are complete) for ``keep_alive_timeout``. A client that
    sends its headers a byte a second therefore loses its connection as on
    stock hypercorn, whose keep-alive timer runs until the headers are
    complete; without this, each byte arriving within ``read_timeout``
    would keep it open for as long as h11 accepts more header bytes.

    A connection sending a server-sent event stream (marked by
    :func:`streaming`) has a silent client by design: a read that times out
    is simply retried while the mark is on. The loop is otherwise stock
    0.18's ``TCPServer._read_data``.
    """
    from hypercorn.events import Closed, RawData
    from hypercorn.trio import tcp_server

    stock = tcp_server.TCPServer._read_data
    if getattr(stock, "idle_deadline", False):
        return

    async def read_data(self: Any) -> None:
        read_timeout = self.config.read_timeout or math.inf
        idle_timeout = self.config.keep_alive_timeout or math.inf
        while True:
            deadline = trio.current_time() + read_timeout
            since = getattr(self.idle_task, "idle_since", None)
            if since is not None:
                deadline = min(deadline, since + idle_timeout)
            try:
                with trio.CancelScope(deadline=deadline) as timer:  # fail_at, minus a generator
                    data = await self.stream.receive_some(tcp_server.MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                break
            if timer.cancelled_caught:
                if getattr(self, "_bc_streaming", 0) > 0:
                    continue
                break
            await self.protocol.handle(RawData(bytes(data)))
            if data == b"":
                break
        await self.protocol.handle(Closed())

    read_data.idle_deadline = True  # type: ignore[attr-defined]
    tcp_server.TCPServer._read_data = read_data  # type: ignore[method-assign]
    tcp_server.TCPServer._bc_streams = True  # type: ignore[attr-defined]  # see streaming()


def answer_malformed_http_in_our_envelope(settings: Settings) -> None:
    """Render hypercorn's own 4xx (a request h11 cannot parse) as our envelope.

    Such requests never reach the app: hypercorn answers them itself with an
    empty body. It calls ``_send_error_response`` inside its ``except
    h11.RemoteProtocolError`` block, so the active exception says what was
    wrong; a bad ``Content-Length`` is 400 ``invalid_content_length``
    (contract §2.1), anything else 400 ``bad_request``.
    """
    from hypercorn.protocol.h11 import H11Protocol

    base = settings.base_url.rstrip("/") or f"http://{settings.host}:{settings.port}"

    async def send_error_response(self: H11Protocol, status_code: int) -> None:
        problem = sys.exc_info()[1]
        text = str(problem) if problem is not None else "Malformed HTTP request"
        code = "invalid_content_length" if "content-length" in text.lower() else "bad_request"
        body = json.dumps(
            {
                "error": code,
                "message": f"Malformed HTTP request: {text}",
                "request_id": str(uuid.uuid4()),
                "documentation_url": f"{base}/docs/errors.md#{code.replace('_', '-')}",
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await self._send_h11_event(
            h11.Response(
                status_code=status_code, headers=headers + self.config.response_headers("h11")
            )
        )
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())

    if not hasattr(H11Protocol, "_send_error_response"):
        raise RuntimeError("hypercorn changed: H11Protocol._send_error_response is gone")
    send_error_response.envelope = True  # type: ignore[attr-defined]
    H11Protocol._send_error_response = send_error_response  # type: ignore[method-assign]


def _date_header_once_a_second() -> None:
    """Format the ``Date`` response header once per second, not per response.

    Hypercorn's ``Config.response_headers`` calls ``format_date_time(time())``
    for every response; the formatted value only changes once a second.
    """
    from hypercorn import config

    stock_format = getattr(config, "format_date_time", None)
    if stock_format is None:
        raise RuntimeError("hypercorn changed: config.format_date_time is gone; review tuning")
    if getattr(stock_format, "cached", False):
        return
    cache: list[Any] = [None, ""]

    def format_date_time(timestamp: float | None) -> str:
        second = int(time.time() if timestamp is None else timestamp)
        if cache[0] != second:
            cache[0], cache[1] = second, stock_format(second)
        return str(cache[1])

    format_date_time.cached = True  # type: ignore[attr-defined]
    setattr(config, "format_date_time", format_date_time)  # noqa: B010 (not exported)


OnLeave = Callable[[Callable[[], None] | None], None]


def streaming(send: Any, on: bool) -> None:
    """Mark (``on``) or unmark the connection behind an ASGI ``send`` of tuned
    hypercorn (HTTP/1.1 over TCP) as sending a stream; elsewhere, nothing."""
    stream = getattr(send, "__self__", None)  # HTTPStream
    protocol = getattr(getattr(stream, "send", None), "__self__", None)  # H11Protocol
    server: Any = getattr(getattr(protocol, "send", None), "__self__", None)  # TCPServer
    if server is not None and getattr(type(server), "_bc_streams", False):
        server._bc_streaming = getattr(server, "_bc_streaming", 0) + (1 if on else -1)


def _report_closed_streams() -> None:
    """Let the app ask to be called, synchronously, when its client goes away.

    A parked long-poll sleeps without reading ``receive`` (no task per
    waiter, no exception to wake it); hypercorn's ``StreamClosed`` is how it
    learns its client left. See :func:`client_gone_hook`.
    """
    from hypercorn.protocol.events import StreamClosed
    from hypercorn.protocol.http_stream import HTTPStream

    if getattr(HTTPStream, "_bc_reports_close", False):
        return
    if not hasattr(HTTPStream, "handle"):
        raise RuntimeError("hypercorn changed: HTTPStream.handle is gone; review tuning")
    stock_handle = HTTPStream.handle

    async def handle(self: Any, event: Any) -> None:
        if isinstance(event, StreamClosed):
            callback = getattr(self, "_bc_on_close", None)
            if callback is not None:
                self._bc_on_close = None
                callback()
        await stock_handle(self, event)

    HTTPStream.handle = handle  # type: ignore[method-assign]
    HTTPStream._bc_reports_close = True  # type: ignore[attr-defined]


def client_gone_hook(send: Any) -> OnLeave | None:
    """For an ASGI ``send`` of tuned hypercorn: ``hook(callback)`` arranges for
    ``callback()`` to run when the client goes away (at once if it already
    has); ``hook(None)`` cancels that. None for any other server."""
    stream: Any = getattr(send, "__self__", None)
    if not getattr(type(stream), "_bc_reports_close", False):
        return None

    def hook(callback: Callable[[], None] | None) -> None:
        if callback is not None and stream.closed:
            callback()
            return
        stream._bc_on_close = callback

    return hook


def tune_hypercorn() -> None:
    """Apply the patches that make hypercorn's trio worker cheaper per request."""
    _use_read_timeout_only()
    _idle_deadline_in_reads()
    install_whole_responses()
    _date_header_once_a_second()
    _report_closed_streams()
