"""Whole HTTP/1.1 answers in one write, and the keep-alive cycle after them.

Part of the hypercorn 0.18 tuning (``hypercorn_tuning.tune_hypercorn``
installs it; ``hypercorn_pin`` checks what it replaces). Stock hypercorn
turns an ASGI response into four protocol events (start, body, end,
close), each dispatched through the h11 protocol and written through the
connection's send lock, a shielded cancel scope and a syscall. Here the
start of an HTTP/1.1 response is held, with its body chunks, until the
body is complete; then the whole response goes out in one write.

The plain keep-alive answer
---------------------------
Most answers are the plainest HTTP/1.1 case: the request has fully
arrived, keeps the connection alive, is not HEAD, and the response has a
``Content-Length`` equal to its body and no framing header of its own.
For those h11's machinery decides nothing: it validates the headers twice,
works out the framing, and after the answer only resets both sides to
IDLE. That cost about 40 % of the server's CPU per answer when 10,000
long-polls were woken at once (``tools/profile_fanout.py``). Such an answer
is serialized here, byte for byte as h11 writes it (status line
``HTTP/1.1 <code> ``, headers in the order given, ``Host`` first, blank
line, body), and once the socket has taken it all the connection's h11
state is replaced by a fresh ``h11.Connection`` holding the bytes already
received after the request (a pipelined request, an EOF): exactly the
state ``start_next_cycle`` would leave. Then the stream is closed and the
reader let go as hypercorn's ``_maybe_recycle`` does.

Guarantee: nothing from the write to the end of that recycle checkpoints
(with ``hypercorn_recycle`` installed, which the plain case requires: its
stream close never waits), so a cancellation of the app's task
(quart-trio cancels a request's nursery once its stream closes) cannot
land in between and leave the connection half recycled; the answer and
the recycle happen together or not at all. Anything else (a partial
write, a request not complete or not keep-alive, HEAD, a 1xx/204/304, a
server shutting down, trailers, HTTP/2, a body over ``HOLD_LIMIT``) takes
the general path: h11 drives the framing, hypercorn (with
``hypercorn_recycle``) the recycle.
"""

from __future__ import annotations

import os
import time
from typing import Any

import h11

STREAM_KEY = "backchannel.stream"  # in a response start: a stream, never held
HOLD_LIMIT = 1 << 20  # a response body larger than this is streamed as it comes

# response headers h11 acts on: any but one exact Content-Length means h11 decides
_FRAMING = frozenset((b"connection", b"transfer-encoding", b"host", b"content-length"))


class _Held:
    """The start of a response and the body chunks that came after it."""

    __slots__ = ("chunks", "size", "start")

    def __init__(self, start: Any) -> None:
        self.start = start
        self.chunks: list[bytes] = []
        self.size = 0


def _keeps_alive(request_headers: Any) -> bool:
    """What h11 decides from a request's ``Connection`` header (HTTP/1.1 known)."""
    for name, value in request_headers:
        if name.lower() == b"connection" and b"close" in (
            token.strip() for token in value.lower().split(b",")
        ):
            return False
    return True


def plain_answer(
    connection: Any, method: str, request_headers: Any, status: int, headers: Any, body: bytes
) -> bytes | None:
    """The bytes h11 would write for this answer, if it is the plain keep-alive case.

    None when h11 has anything to decide (module docstring): the caller
    then lets h11 serialize the answer and drive the connection's state.
    """
    if (
        type(connection) is not h11.Connection
        or connection.our_state is not h11.SEND_RESPONSE
        or connection.their_state is not h11.DONE
        or connection.their_http_version != b"1.1"
        or connection.they_are_waiting_for_100_continue
        or method in ("HEAD", "CONNECT")
        or status < 200
        or status in (204, 304)
        or not _keeps_alive(request_headers)
    ):
        return None
    length = b"%d" % len(body)
    lengths = 0
    parts = [b"HTTP/1.1 %d \r\n" % status]
    for name, value in headers:
        lower = name.lower()
        if lower in _FRAMING:
            if lower != b"content-length" or value != length:
                return None
            lengths += 1
        parts.append(b"%s: %s\r\n" % (name, value))
    if lengths != 1:
        return None
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)


def next_cycle(protocol: Any) -> None:
    """Give ``protocol`` the h11 state ``start_next_cycle`` would leave after a
    plain keep-alive answer: a fresh connection holding what was received
    after the request."""
    old = protocol.connection
    data, closed = old.trailing_data
    fresh = h11.Connection(
        h11.SERVER, max_incomplete_event_size=protocol.config.h11_max_incomplete_size
    )
    if data:
        fresh.receive_data(data)
    if closed:
        fresh.receive_data(b"")
    protocol.connection = fresh


def install_whole_responses() -> None:
    """Send a complete HTTP/1.1 response in one step and one ``send_all``.

    The start of an HTTP/1.1 response is held, with its body chunks (Quart
    sends a body in chunks, then an empty last one), until the body is
    complete; then the whole response goes out, straight to the socket
    when it takes it all (the common case: no send lock, cancel scope or
    trio socket wrapper per answer). The plain keep-alive case skips h11
    (module docstring). Anything else (a body over ``HOLD_LIMIT``,
    trailers, HTTP/2) replays what was held and takes hypercorn's own path,
    so behaviour is unchanged. A start marked ``STREAM_KEY`` (server-sent
    events) is never held: it goes out with its first body chunk.

    The headers skip h11's per-header regexes (``_parsed``): every name and
    value is bytes from the app (our constants, numbers, or request headers
    h11 already validated; Quart's werkzeug headers) or from hypercorn.
    """
    from hypercorn.events import RawData, Updated
    from hypercorn.protocol.events import StreamClosed
    from hypercorn.protocol.h11 import H11Protocol
    from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream
    from hypercorn.utils import suppress_body

    if not hasattr(HTTPStream, "app_send") or not hasattr(H11Protocol, "stream_send"):
        raise RuntimeError("hypercorn changed: HTTPStream.app_send is gone; review tuning")
    stock_app_send = HTTPStream.app_send
    if getattr(stock_app_send, "whole_responses", False):
        return  # already installed (one process may serve more than once)

    def h11_bytes(connection: h11.Connection, event: Any) -> bytes:
        try:
            return bytes(connection.send(event) or b"")
        except h11.LocalProtocolError:
            if connection.their_state != h11.ERROR:
                raise
            return b""

    def write_now(send: Any, data: bytes) -> bytes:
        """Write ``data`` straight to the socket; return what it did not take.

        Only when nobody holds the connection's send lock (so no write can
        interleave) and the connection is a plain TCP socket; otherwise, or
        on any error, everything is returned for hypercorn's own path, which
        waits for the lock and the socket and handles a closed peer.
        """
        server = getattr(send, "__self__", None)
        lock = getattr(server, "send_lock", None)
        sock = getattr(getattr(server, "stream", None), "socket", None)
        if lock is None or sock is None or lock.locked():
            return data
        try:
            sent = os.write(sock.fileno(), data)
        except OSError:
            return data
        return data[sent:]

    async def recycle_plainly(stream: Any, protocol: Any, start: Any) -> None:
        """After a plain keep-alive answer went out whole: recycle, no checkpoint.

        Stock ``_maybe_recycle``'s steps in its order, with :func:`next_cycle`
        for h11's: the access log (a logger call), the stream's close
        (``hypercorn_recycle`` makes its queueing never wait), then the new
        cycle, the reader let go and the idle mark (``_ReadTimeoutOnly``).
        The stream is closed before the next cycle begins: a reader that
        runs meanwhile finds the request still being answered (PAUSED).
        """
        stream.response = start
        stream.state = ASGIHTTPState.CLOSED
        await stream.config.log.access(stream.scope, start, time.time() - stream.start_time)
        await protocol._close_stream()
        next_cycle(protocol)
        await protocol.can_read.set()
        idle = getattr(getattr(protocol.send, "__self__", None), "idle_task", None)
        mark_idle = getattr(idle, "mark_idle", None)  # TCPServer's _ReadTimeoutOnly
        if mark_idle is not None:
            mark_idle()
        else:
            await protocol.send(Updated(idle=True))

    async def send_whole(stream: Any, start: Any, body: bytes) -> None:
        protocol = stream.send.__self__
        status = int(start["status"])
        # ASGI headers are bytes; surrounding blanks are legal (optional whitespace)
        headers = [*start.get("headers", ()), *protocol.config.response_headers("h11")]
        if protocol.keep_alive_requests >= protocol.config.keep_alive_max_requests:
            headers.append((b"connection", b"close"))
        connection = protocol.connection
        scope = stream.scope
        rest: bytes | None = None  # what the socket did not take of a plain answer
        plain = plain_answer(connection, scope["method"], scope["headers"], status, headers, body)
        if (
            plain is not None
            and getattr(H11Protocol._maybe_recycle, "safe", False)
            and not protocol.context.terminated.is_set()
        ):
            rest = write_now(protocol.send, plain)
            if not rest:
                await recycle_plainly(stream, protocol, start)
                return
        # h11 serializes (the same bytes, for a plain answer) and moves its state on
        response = h11.Response(headers=headers, status_code=status, _parsed=True)
        data = h11_bytes(connection, response)
        if body and not suppress_body(scope["method"], status):
            data += h11_bytes(connection, h11.Data(data=body))
        data += h11_bytes(connection, h11.EndOfMessage())
        stream.response = start
        stream.state = ASGIHTTPState.CLOSED
        if rest is None:
            rest = write_now(protocol.send, data) if data else b""
        if rest:
            await protocol.send(RawData(data=rest))
        await stream.config.log.access(scope, start, time.time() - stream.start_time)
        await stream.send(StreamClosed(stream_id=stream.stream_id))

    async def app_send(self: Any, message: Any) -> None:
        held: _Held | None = getattr(self, "_bc_held", None)
        if held is None:
            if (
                message is not None
                and message["type"] == "http.response.start"
                and self.state == ASGIHTTPState.REQUEST
                and not message.get("trailers", False)
                and not message.get(STREAM_KEY, False)
                and isinstance(getattr(self.send, "__self__", None), H11Protocol)
            ):
                self._bc_held = _Held(message)
                return
            await stock_app_send(self, message)
            return
        if message is not None and message["type"] == "http.response.body":
            held.chunks.append(bytes(message.get("body", b"")))
            held.size += len(held.chunks[-1])
            if not message.get("more_body", False):
                self._bc_held = None
                await send_whole(self, held.start, b"".join(held.chunks))
                return
            if held.size <= HOLD_LIMIT:
                return
            message = {"type": "http.response.body", "body": b"", "more_body": True}
        # not a whole response after all: replay what was held, then go on as stock
        self._bc_held = None
        await stock_app_send(self, held.start)
        if held.chunks:
            body: Any = {"type": "http.response.body", "body": b"".join(held.chunks)}
            body["more_body"] = True
            await stock_app_send(self, body)
        await stock_app_send(self, message)

    app_send.whole_responses = True  # type: ignore[attr-defined]
    HTTPStream.app_send = app_send  # type: ignore[method-assign]
