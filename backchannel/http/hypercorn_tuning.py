"""Adjustments to hypercorn 0.18's trio worker, each measured on this stack.

Hypercorn is pinned (pyproject.toml); every patch checks that what it
replaces still exists and refuses to start otherwise, so an upgrade cannot
silently undo one. :func:`tune_hypercorn` applies the ones that only make
hypercorn cheaper (the benchmark's framework floor applies them too);
:func:`answer_malformed_http_in_our_envelope` is about our error format.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import h11

from backchannel.config import Settings


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
    (stack-notes pitfall 1), so idle connections are closed by
    ``read_timeout`` instead, which costs nothing per request. This class
    keeps hypercorn's ``SingleTask`` interface and does nothing.
    """

    async def restart(self, task_group: object, action: object) -> None:
        return None

    async def stop(self) -> None:
        return None


def _use_read_timeout_only() -> None:
    """Install :class:`_ReadTimeoutOnly` in hypercorn's trio TCP server."""
    from hypercorn.trio import tcp_server

    if not hasattr(tcp_server, "TrioSingleTask"):
        raise RuntimeError("hypercorn changed: tcp_server.TrioSingleTask is gone; review server.py")
    tcp_server.TrioSingleTask = _ReadTimeoutOnly


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
    H11Protocol._send_error_response = send_error_response  # type: ignore[method-assign]


def _coalesce_response_writes() -> None:
    """Write a whole HTTP/1.1 response with one ``send_all``.

    Stock hypercorn serializes the status line and headers, each body chunk
    and the end of the message as separate h11 events, and writes each one
    through the connection's send lock, a shielded cancel scope and a
    syscall: three writes for a small JSON answer. Here the bytes of a
    response are gathered and written once, at its end. Our answers are
    complete bodies, never streams, so nothing waits on a held-back header.
    """
    from hypercorn.events import RawData
    from hypercorn.protocol.events import Body, EndBody, Response
    from hypercorn.protocol.h11 import H11Protocol

    if not hasattr(H11Protocol, "stream_send"):
        raise RuntimeError("hypercorn changed: H11Protocol.stream_send is gone; review tuning")
    stock_send = H11Protocol.stream_send
    if getattr(stock_send, "coalesces", False):
        return  # already installed (one process may serve more than once)

    def h11_bytes(self: Any, event: Any) -> bytes:
        try:
            return bytes(self.connection.send(event) or b"")
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return b""

    async def stream_send(self: Any, event: Any) -> None:
        if isinstance(event, Response) and event.status_code >= 200:
            headers = [*event.headers, *self.config.response_headers("h11")]
            if self.keep_alive_requests >= self.config.keep_alive_max_requests:
                headers.append((b"connection", b"close"))
            # _parsed: skip h11's per-header regexes. Every name and value here
            # is bytes from hypercorn (which strips them) and comes from our
            # constants, numbers, or request headers h11 already validated.
            response = h11.Response(headers=headers, status_code=event.status_code, _parsed=True)
            self._bc_pending = [h11_bytes(self, response)]
        elif isinstance(event, Body) and getattr(self, "_bc_pending", None) is not None:
            self._bc_pending.append(h11_bytes(self, h11.Data(data=event.data)))
        elif isinstance(event, EndBody) and getattr(self, "_bc_pending", None) is not None:
            pending = self._bc_pending
            self._bc_pending = None
            pending.append(h11_bytes(self, h11.EndOfMessage()))
            await self.send(RawData(data=b"".join(pending)))
        else:
            await stock_send(self, event)

    stream_send.coalesces = True  # type: ignore[attr-defined]
    H11Protocol.stream_send = stream_send  # type: ignore[method-assign]


def tune_hypercorn() -> None:
    """Apply the patches that make hypercorn's trio worker cheaper per request."""
    _use_read_timeout_only()
    _coalesce_response_writes()
