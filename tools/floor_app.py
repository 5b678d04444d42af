"""The framework floor: a bare quart-trio app served by hypercorn like the real server.

Scenario 5 of ``tools/bench.py`` runs the posting load against this app and
against ``backchannel serve`` in the same run, and reports our posts/s as a
percentage of this floor. The app does what any JSON POST handler on this
stack must do and nothing more: read the body, ``json.loads`` it, and answer
a constant JSON object with status 201. Everything the real server adds on
top (auth, validation, the channel actor, the journal) is what the
percentage measures.

It is served the way the real server serves itself: one process,
``hypercorn.trio.serve`` with a ``shutdown_trigger`` on SIGTERM/SIGINT, and
the same Config settings as ``backchannel/http/server.py``
(``hypercorn_config``; see also the team's stack notes):
``read_timeout`` and ``keep_alive_timeout`` 60 s (above the 30 s long-poll
cap), a large ``keep_alive_max_requests``, ``backlog`` = ``somaxconn``,
``graceful_timeout`` 5 s, no access log. The real server also makes hypercorn cheaper per request
(``tune_hypercorn`` in ``backchannel/http/hypercorn_tuning.py``: no
per-request keep-alive timer, one write per response); the floor applies
that same function when it can import it, so the floor stays a floor.
``--stock-hypercorn`` serves with unmodified hypercorn instead.
``GET /health`` reports which (``"hypercorn": "as-server"|"stock"``).

Usage: ``python tools/floor_app.py --port 8099``. ``GET /health`` answers 200
once it is serving.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import request
from quart_trio import QuartTrio

LONG_POLL_CAP_SECONDS = 30
READ_TIMEOUT_SECONDS = LONG_POLL_CAP_SECONDS + 30
KEEP_ALIVE_MAX_REQUESTS = 1_000_000_000
GRACEFUL_TIMEOUT_SECONDS = 5.0

# A response body of the same order of size as the real post reply.
CONSTANT_REPLY: dict[str, Any] = {
    "message": {
        "id": "30eba32f-0e50-44bc-91b2-5f1423874496",
        "channel_id": "9e763084-d47f-457d-a4f4-b58fadab5e92",
        "actor": None,
        "actor_label": "floor",
        "content": "floor",
        "metadata": {},
        "created_at": "2026-11-28T11:34:02.203069+00:00",
        "expires_at": "2026-11-29T11:34:02.203069+00:00",
        "claimed_by": None,
        "claimed_by_key_id": None,
        "mentions": [],
        "claimed_at": None,
        "acknowledged_by": [],
        "active": True,
    },
    "next_cursor": "1",
}


def somaxconn(default: int = 4096) -> int:
    """The kernel's listen backlog cap, so bursts of connects are not dropped."""
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text().strip())
    except (OSError, ValueError):
        return default


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def adopt_server_hypercorn_tweaks() -> bool:
    """Apply the real server's hypercorn adjustment; False if it cannot be imported."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        from backchannel.http.hypercorn_tuning import tune_hypercorn
    except ImportError:
        return False
    tune_hypercorn()
    return True


def create_app(hypercorn_mode: str) -> QuartTrio:
    app = QuartTrio(__name__)

    @app.get("/health")
    async def health() -> tuple[dict[str, Any], int]:
        return {"status": "ok", "hypercorn": hypercorn_mode}, 200

    @app.post("/v1/channels/<identifier>/messages")
    async def post_message(identifier: str) -> tuple[dict[str, Any], int]:
        json.loads(await request.get_data())
        return CONSTANT_REPLY, 201

    return app


def make_config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.read_timeout = READ_TIMEOUT_SECONDS
    config.keep_alive_timeout = READ_TIMEOUT_SECONDS
    config.keep_alive_max_requests = KEEP_ALIVE_MAX_REQUESTS
    config.backlog = somaxconn()
    config.graceful_timeout = GRACEFUL_TIMEOUT_SECONDS
    config.accesslog = None
    config.include_server_header = False
    return config


async def _until_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


async def _main(host: str, port: int, hypercorn_mode: str) -> None:
    app = create_app(hypercorn_mode)
    await serve(app, make_config(host, port), shutdown_trigger=_until_signal)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--stock-hypercorn",
        action="store_true",
        help="do not apply the real server's hypercorn keep-alive timer replacement",
    )
    args = parser.parse_args(argv)
    raise_nofile_limit()
    mode = "stock" if args.stock_hypercorn or not adopt_server_hypercorn_tweaks() else "as-server"
    print(f"floor app: hypercorn {mode}", file=sys.stderr, flush=True)
    trio.run(_main, args.host, args.port, mode)


if __name__ == "__main__":
    main()
