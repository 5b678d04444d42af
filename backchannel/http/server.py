"""Serving the app with hypercorn's trio worker, inside the runtime.

The order of a clean stop (SIGTERM/SIGINT or ``stop``): the shutdown
trigger first wakes every long-poll waiter, which answers its empty page
(stack-notes pitfall 2: hypercorn would otherwise cut them with no answer
after its grace period); hypercorn then stops accepting and finishes
in-flight requests within ``graceful_timeout``; only then does the runtime
close, flush the journal and write the final snapshot.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import uuid
from pathlib import Path

import h11
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from backchannel.config import Settings
from backchannel.http.app import create_app
from backchannel.runtime.service import open_runtime

log = logging.getLogger(__name__)


def _somaxconn() -> int:
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


def _answer_malformed_http_in_our_envelope(settings: Settings) -> None:
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


def hypercorn_config(settings: Settings) -> Config:
    """Hypercorn settings that avoid the pitfalls measured in stack-notes.md."""
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.read_timeout = math.ceil(settings.read_timeout)  # closes idle keep-alives (pitfall 1)
    config.keep_alive_timeout = settings.read_timeout
    config.keep_alive_max_requests = 1_000_000_000  # pooled clients (pitfall 3)
    config.backlog = _somaxconn()
    config.graceful_timeout = settings.graceful_timeout_seconds
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.h2_max_inbound_frame_size = 2**14
    return config


async def serve(
    settings: Settings,
    *,
    stop: trio.Event | None = None,
    handle_signals: bool = False,
    in_memory: bool = False,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server until ``stop`` is set (or a signal arrives).

    ``task_status.started`` receives the bound base URL, e.g.
    ``http://127.0.0.1:8080`` (useful with port 0).
    """
    stop = stop if stop is not None else trio.Event()
    _use_read_timeout_only()
    _answer_malformed_http_in_our_envelope(settings)
    async with open_runtime(settings, in_memory=in_memory) as hub:
        app = create_app(hub)

        async def shutdown_trigger() -> None:
            await stop.wait()
            hub.closing = True
            for actor in hub.actors.values():
                actor.wake_all()
            await trio.sleep(0.05)  # let woken waiters write their answers

        async with trio.open_nursery() as nursery:
            if handle_signals:
                nursery.start_soon(_watch_signals, stop)
            binds = await nursery.start(
                lambda task_status: hypercorn_serve(
                    app,
                    hypercorn_config(settings),
                    shutdown_trigger=shutdown_trigger,
                    task_status=task_status,
                )
            )
            url = binds[0] if binds else f"http://{settings.host}:{settings.port}"
            log.info("serving on %s", url)
            task_status.started(url)
            await stop.wait()
            # hypercorn returns once in-flight requests are done; then stop watching signals
            nursery.cancel_scope.deadline = (
                trio.current_time() + settings.graceful_timeout_seconds + 5
            )
        log.info("HTTP stopped; flushing and writing the final snapshot")


async def _watch_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            stop.set()
            return
