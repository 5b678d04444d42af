"""Serving the app with hypercorn's trio worker, inside the runtime.

The order of a clean stop (SIGTERM/SIGINT or ``stop``): the shutdown
trigger first wakes every long-poll waiter, which answers its empty page
(stack-notes pitfall 2: hypercorn would otherwise cut them with no answer
after its grace period); hypercorn then stops accepting and finishes
in-flight requests within ``graceful_timeout``; only then does the runtime
close, flush the journal and write the final snapshot. The MCP endpoint's
task group (``/mcp``) lives around HTTP: it is loaded in the background once
serving has begun (``http/mcp/mount.py``) and ends after the last request.

Stock hypercorn (``BACKCHANNEL_HTTP_TUNING=off``): none of our hypercorn
patches is applied, not even the safe keep-alive recycle of
``hypercorn_recycle``. That one is a correctness fix, but only for apps
that answer before reading the whole body; ours never does (the API lane
reads every body before answering, and reads ahead for Quart), so the wire
stays correct without it (``tests/http/test_keepalive.py`` runs in the
stock subset). Parked long-polls then learn of a closed client through the
portable path (``Request.park`` reads ``receive`` for ``http.disconnect``),
and idle keep-alive connections are closed by hypercorn's own keep-alive
timer as well as by ``read_timeout``. One difference is visible on the
wire: a request h11 cannot parse at all gets hypercorn's bare 400 instead
of our JSON envelope. Not on the wire: a connection its client closed
keeps its descriptor until hypercorn's keep-alive timer fires (up to
``IDLE_TIMEOUT_SECONDS``). A process that tuned hypercorn once cannot serve
stock afterwards (the patches are process-wide): it refuses to start.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import signal
from collections.abc import Awaitable, Callable, Iterator

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from backchannel.config import Settings
from backchannel.http.app import create_app
from backchannel.http.hypercorn_pin import check_hypercorn, hypercorn_patched, installed_hypercorn
from backchannel.http.hypercorn_recycle import install_safe_recycle
from backchannel.http.hypercorn_tuning import (
    answer_malformed_http_in_our_envelope,
    somaxconn,
    tune_hypercorn,
)
from backchannel.http.request import DRAIN_FACTOR
from backchannel.runtime.heap import trim_periodically
from backchannel.runtime.service import open_runtime
from backchannel.runtime.vitals import log_vitals

log = logging.getLogger(__name__)

# Young-generation GC thresholds while serving. Request handling leaves
# reference cycles (exceptions, tracebacks, frames) that only the cyclic GC
# frees; with Python's default (700, 10, 10) the collector ran so often that
# it took ~25 % of the server's CPU while 10,000 waiters were answered
# (tools/bench.py idle). Collecting every 50,000 allocations keeps
# the garbage small and the collections rare.
SERVING_GC_THRESHOLDS = (50_000, 20, 100)


@contextlib.contextmanager
def _serving_gc() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def hypercorn_config(settings: Settings) -> Config:
    """Hypercorn settings that avoid the pitfalls measured in stack-notes.md."""
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.read_timeout = math.ceil(settings.read_timeout)  # closes idle keep-alives (pitfall 1)
    config.keep_alive_timeout = settings.read_timeout
    config.keep_alive_max_requests = 1_000_000_000  # pooled clients (pitfall 3)
    config.backlog = somaxconn()
    config.graceful_timeout = settings.graceful_timeout_seconds
    config.accesslog = None
    config.include_server_header = False  # one header less per answer; no version banner
    config.errorlog = logging.getLogger("hypercorn.error")
    config.h2_max_inbound_frame_size = 2**14
    if settings.certfile:
        config.certfile = settings.certfile
        config.keyfile = settings.keyfile
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
    prepare_hypercorn(settings)
    with _serving_gc():
        await _serve(settings, stop, handle_signals, in_memory, task_status)


def prepare_hypercorn(settings: Settings) -> None:
    """Tune hypercorn, all patches or none (module docstring).

    Raises:
        RuntimeError: tuning is on but hypercorn is not the validated one,
            or tuning is off but this process already tuned hypercorn.
    """
    if settings.http_tuning:
        check_hypercorn()
        tune_hypercorn()
        install_safe_recycle(settings.max_body_bytes * DRAIN_FACTOR)
        answer_malformed_http_in_our_envelope(settings)
        return
    patched = hypercorn_patched()
    if patched:
        raise RuntimeError(
            f"BACKCHANNEL_HTTP_TUNING=off, but this process already patched hypercorn "
            f"({', '.join(patched)}); start a fresh process"
        )
    log.info("BACKCHANNEL_HTTP_TUNING=off: stock hypercorn %s", installed_hypercorn())


async def _serve(
    settings: Settings,
    stop: trio.Event,
    handle_signals: bool,
    in_memory: bool,
    task_status: trio.TaskStatus[str],
) -> None:
    async with open_runtime(settings, in_memory=in_memory) as hub:
        app = create_app(hub)

        async def shutdown_trigger() -> None:
            await stop.wait()
            hub.closing = True
            for actor in list(hub.passivation.running):  # passive ones have no waiter
                actor.wake_all()
            await trio.sleep(0.05)  # let woken waiters write their answers

        access_log = app.extensions["backchannel"].access_log
        mcp = app.extensions["backchannel.mcp"].running(threaded=not in_memory)
        async with mcp, trio.open_nursery() as nursery:
            if handle_signals:
                nursery.start_soon(_watch_signals, stop)
            if access_log is not None:
                nursery.start_soon(access_log.run, stop)
            vitals_scope, trim_scope = trio.CancelScope(), trio.CancelScope()
            if settings.malloc_trim_seconds > 0 and not in_memory:
                trim_s = settings.malloc_trim_seconds
                nursery.start_soon(_run_in, trim_scope, trim_periodically, trim_s)
            if settings.vitals_log_seconds > 0:
                nursery.start_soon(
                    _run_in, vitals_scope, log_vitals, hub, settings.vitals_log_seconds
                )
            binds = await nursery.start(
                lambda task_status: hypercorn_serve(
                    app,
                    hypercorn_config(settings),
                    shutdown_trigger=shutdown_trigger,
                    task_status=task_status,
                )
            )
            scheme = "https" if settings.certfile else "http"
            url = binds[0] if binds else f"{scheme}://{settings.host}:{settings.port}"
            log.info(
                "serving on %s (fsync=%s, metrics=%s, trusted proxies=%s, webhooks: %d pending, "
                "retries %s s, private targets %s)",
                url,
                settings.fsync,
                "on" if settings.metrics_enabled else "off",
                settings.trusted_proxies or "none",
                len(hub.world.outbox.pending),
                settings.webhook_retry_seconds,
                "allowed" if settings.webhook_allow_private else "refused",
            )
            task_status.started(url)
            await stop.wait()
            vitals_scope.cancel()
            trim_scope.cancel()
            # hypercorn returns once in-flight requests are done; then stop watching signals
            nursery.cancel_scope.deadline = (
                trio.current_time() + settings.graceful_timeout_seconds + 5
            )
        if access_log is not None:
            access_log.flush()  # requests answered during the graceful stop
        outbox = hub.world.outbox
        log.info(
            "HTTP stopped after %.0fs; %d keys minted, webhooks %d pending; "
            "flushing and writing the final snapshot",
            (hub.clock.now() - hub.started_at) / 1e6,
            hub.keys_minted,
            len(outbox.pending),
        )


async def _run_in(
    scope: trio.CancelScope, fn: Callable[..., Awaitable[None]], *args: object
) -> None:
    with scope:
        await fn(*args)


async def _watch_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            stop.set()
            return
